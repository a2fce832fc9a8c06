#!/usr/bin/env python3
"""bifromq_broker: an MQTT broker for tests that enforces BifroMQ's per-connection rules
(/work/shared/BIFROMQ.md; BifroMQ itself needs a JVM build we do not have). Standard library
only (asyncio, one thread); run with /usr/bin/python3 or any Python 3.9+.

It is a real broker: MQTT 3.1, 3.1.1 and 5.0; SUBSCRIBE/UNSUBSCRIBE with + and # wildcards;
PUBLISH QoS 0/1/2 in and out with PUBACK, PUBREC/PUBREL/PUBCOMP; retained messages (retain
handling 0/1/2); persistent sessions (3.x clean session 0, 5.0 clean start 0 with Session
Expiry) keeping subscriptions, unacknowledged messages and a session queue while offline;
keepalive; Will messages (with Will Delay Interval); shared subscriptions $share/G/filter (each
message to one member picked at random, online members first) and $oshare/G/filter (all
messages of one publisher to the same member: rendezvous hash of publisher and member ids);
MQTT 5 Subscription Identifiers, No Local, Retain As Published, Message Expiry, topic aliases
both ways; an optional WebSocket listener (path /mqtt, subprotocols mqtt, mqttv3.1,
mqttv3.1.1). A message that matches several subscriptions of one session is delivered once per
subscription (as BifroMQ does), each copy with its own Subscription Identifier.

What it enforces (defaults are BifroMQ's; each is a flag / constructor argument):

  bandwidth in/out       --bandwidth-in / --bandwidth-out B (bytes/s, 524288; 0 = unlimited):
                         a token bucket per direction holding one second's worth: past it the
                         broker stops reading (in) or holds its writes (out); nothing is cut.
                         Each wait is counted (throttled_in / throttled_out).
  PUBLISH rate           --rate N (200): PUBLISHes from a client counted in FIXED one-second
                         windows starting when the connection was accepted (window k =
                         [t0+k s, t0+(k+1) s)); a new connection starts a new count. Past N in a
                         window: 5.0 DISCONNECT 0x96; 3.x the PUBLISH is dropped without PUBACK
                         (dropped "rate"; --v3-over-limit close closes the socket instead, as
                         the BifroMQ 3.x sources do). Changeable at run time: set_rate(n) /
                         set(rate=n), or GET /set?rate=N on the control port.
  Receive Maximum        --receive-max N (200), checked before the rate: a QoS 1/2 PUBLISH
                         arriving while N of the client's QoS 1/2 PUBLISHes are unacknowledged
                         by the broker (QoS 1 until its PUBACK is sent, QoS 2 until PUBREL
                         arrives): 5.0 DISCONNECT 0x93; 3.x dropped without PUBACK
                         ("receive_max"). --puback-delay S holds the broker's PUBACK/PUBREC S
                         seconds so a test can get there.
  Maximum Packet Size    --max-packet B (262144): a bigger packet from the client -> 5.0
                         DISCONNECT 0x95, 3.x close (as soon as the length field is read). A
                         5.0 CONNECT whose Maximum Packet Size property is above B is refused
                         with CONNACK 0x83 (BifroMQ's check). The broker never sends a client
                         a packet above the client's own Maximum Packet Size (dropped
                         "too_large_for_client").
  topic limits           --max-topic-len 255 --max-topic-levels 16 --max-level-len 40
                         (characters): QoS 0 -> DISCONNECT 0x90; QoS 1/2 -> PUBACK/PUBREC 0x90
                         (dropped "topic_invalid"); 3.x: closed. Filters past the limits get
                         SUBACK 0x8F / 0x80.
  topic aliases          --topic-alias-max N (10): a 5.0 CONNECT asking for more is refused
                         (CONNACK 0x97); client aliases 1..N accepted (0 or >N: DISCONNECT
                         0x94; an unknown alias with an empty topic: 0x82). The broker uses
                         aliases toward clients that announce a Topic Alias Maximum (the first
                         topics get aliases, later ones take slots in turn);
                         --no-aliases switches that off.
  filters per SUBSCRIBE  --max-filters N (10): more -> 5.0 DISCONNECT 0x98, 3.x close (also
                         for UNSUBSCRIBE).
  subscriptions          --max-subs N (100) per session: the one past it gets SUBACK 0x97
                         (5.0) / 0x80 (3.x). --max-share-members N (200) per shared group:
                         the member past it gets 0x97 / 0x80.
  session expiry         --session-expiry-min 60 --session-expiry-max 86400: a nonzero
                         expiry is clamped into the range (Session Expiry Interval in the 5.0
                         CONNACK when it differs from what was asked); 3.x clean session 0
                         gets the maximum.
  keepalive              --min-keepalive S (60): a nonzero keepalive is raised to at least S
                         (Server Keep Alive in the 5.0 CONNACK); no packet for 1.5 x keepalive
                         -> DISCONNECT 0x8D (3.x close).
  Will                   --max-will B (128): Will topic + payload above B: 5.0 CONNACK 0x95,
                         3.x closed without CONNACK.
  session queue          --queue-limit N (1000): messages waiting for or unacknowledged by a
                         session (online or not); a QoS 1/2 message past it is dropped
                         ("queue_full"), a QoS 0 one too ("queue_full_qos0").
  redelivery             --redeliver-period S (10) --redeliver-tries N (4): an unacknowledged
                         QoS 1/2 message is sent at 0, S, 2S, ... (N sends in all) and dropped
                         at N x S ("redelivery_exhausted"): 0, 10, 20, 30 s, dropped at 40 s.
                         (A PUBREL waiting for PUBCOMP is resent on the same schedule.)
  same client id         the older connection gets DISCONNECT 0x8E (3.x: closed).
  bridge bit             protocol level 0x83 / 0x84 (or any level but 3, 4, 5, or a wrong
                         protocol name): the socket is closed with no CONNACK at all.
  no subscriber          a QoS 1 (2) PUBLISH nobody subscribes to: 5.0 PUBACK (PUBREC) 0x10.
  Maximum QoS            --connack-max-qos N: put Maximum QoS N in the 5.0 CONNACK (3.3.x and
                         4.0.0 sent the Receive Maximum there, e.g. 200); left out by default.
  refusal delay          --refuse-delay S (0.1; BifroMQ waits 0.1-5 s at random): CONNACK
                         refusals, and the DISCONNECTs for rate, Receive Maximum, packet size,
                         topic, filter-count violations, are sent S seconds after the fact;
                         the broker reads nothing more from that connection meanwhile.
                         Takeover (0x8E) and keepalive (0x8D) are immediate.

The tally: the broker counts what it accepted, delivered, dropped (by reason) and disconnected
(by reason code), in total, per connection and per client id, and keeps per connection the
times of accepted PUBLISHes (seconds since the connection was accepted), the largest count of
accepted PUBLISHes in one fixed window (max_fixed) and in any sliding one-second window
(max_sliding). A test in this process calls stats(); another process reads --stats-file
(JSON, rewritten within 0.5 s of a change and at exit) or GET /stats on --control-port.

As a program:

    bifromq_broker.py --port P [--ws-port W] [--control-port C] [--stats-file F] [limits...]

prints one line when it listens: "P ws_port=W control_port=C" (the real ports: 0 picks a free
one), then runs until SIGTERM/SIGINT, writes the stats file and exits 0. Flags besides the
limits above:

  --host H             listen address (127.0.0.1)
  --port P             MQTT over TCP (0: a free port)
  --ws-port W          MQTT over WebSocket on path /mqtt (off unless given)
  --control-port C     HTTP on 127.0.0.1:C: GET /stats (?times=1 adds every connection's
                       publish_times and window counts), GET /limits, GET /set?name=value&...
                       (any limit, e.g. rate=50, puback_delay=0.5), GET /reset (zero the tally)
  --stats-file F       the JSON of GET /stats, kept up to date (atomic rename)
  --stats-times        include publish_times in the stats file too
  -v, --verbose        one line per connection event on stderr

Control-port answers are JSON. In-process API: b = BifroBroker(port=0, rate=200, ...).start()
(runs in a thread), b.port, b.stats(times=False), b.set(**limits), b.set_rate(n),
b.reset_tally(), b.stop(). Wire-format helpers for tests: enc_connect, enc_publish,
enc_subscribe, enc_unsubscribe, enc_ack, enc_disconnect, prop, decode, RawClient.

What it does not do: TLS, authentication or authorization (every CONNECT is accepted), AUTH
packets (answered with DISCONNECT 0x8C), persistence across restarts, BifroMQ's HTTP publish
API, tenants, $SYS topics, delivery retries across a restart.
"""

import argparse
import array
import asyncio
import base64
import collections
import hashlib
import json
import os
import random
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse

# ----------------------------------------------------------------------------------------------
# wire format

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = (
    8, 9, 10, 11, 12, 13, 14, 15)
TYPE_NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
              7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
              12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH"}

# MQTT 5 property identifiers
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


class Malformed(Exception):
    """Bytes that are not MQTT."""


def varint(n):
    if n < 0x80:
        return bytes((n,))
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(buf, off):
    """(value, new offset). Malformed when longer than 4 bytes or cut short."""
    mult, val = 1, 0
    for i in range(4):
        if off + i >= len(buf):
            raise Malformed("varint cut short")
        b = buf[off + i]
        val += (b & 0x7F) * mult
        if not b & 0x80:
            return val, off + i + 1
        mult <<= 7
    raise Malformed("varint longer than 4 bytes")


def u16(n):
    return struct.pack(">H", n)


def mstr(b):
    if isinstance(b, str):
        b = b.encode()
    return u16(len(b)) + b


def prop(pid, value):
    """One MQTT 5 property (its identifier picks the value type)."""
    t = _PROP_TYPES[pid]
    if t == "byte":
        return bytes((pid, value))
    if t == "u16":
        return bytes((pid,)) + u16(value)
    if t == "u32":
        return bytes((pid,)) + struct.pack(">I", value)
    if t == "varint":
        return bytes((pid,)) + varint(value)
    if t in ("str", "bin"):
        return bytes((pid,)) + mstr(value)
    return bytes((pid,)) + mstr(value[0]) + mstr(value[1])


def parse_props(buf, off, end=None):
    """([(id, value), ...], offset after the block)."""
    n, off = read_varint(buf, off)
    stop = off + n
    if stop > (len(buf) if end is None else end):
        raise Malformed("properties overrun the packet")
    out = []
    while off < stop:
        pid = buf[off]
        off += 1
        t = _PROP_TYPES.get(pid)
        if t is None:
            raise Malformed("unknown property 0x%02x" % pid)
        if t == "byte":
            v = buf[off]
            off += 1
        elif t == "u16":
            v = (buf[off] << 8) | buf[off + 1]
            off += 2
        elif t == "u32":
            v = struct.unpack_from(">I", buf, off)[0]
            off += 4
        elif t == "varint":
            v, off = read_varint(buf, off)
        elif t in ("str", "bin"):
            ln = (buf[off] << 8) | buf[off + 1]
            v = bytes(buf[off + 2:off + 2 + ln])
            off += 2 + ln
        else:
            ln = (buf[off] << 8) | buf[off + 1]
            k = bytes(buf[off + 2:off + 2 + ln])
            off += 2 + ln
            ln = (buf[off] << 8) | buf[off + 1]
            v = (k, bytes(buf[off + 2:off + 2 + ln]))
            off += 2 + ln
        if off > stop:
            raise Malformed("property overruns its block")
        out.append((pid, v))
    return out, stop


def _rd_str(buf, off, end):
    if off + 2 > end:
        raise Malformed("string length cut short")
    ln = (buf[off] << 8) | buf[off + 1]
    if off + 2 + ln > end:
        raise Malformed("string overruns the packet")
    return bytes(buf[off + 2:off + 2 + ln]), off + 2 + ln


def packet(type_, flags, body):
    return bytes(((type_ << 4) | flags,)) + varint(len(body)) + body


def _props_bytes(props):
    if props is None:
        return b""
    if isinstance(props, (bytes, bytearray)):
        return bytes(props)
    return b"".join(prop(k, v) for k, v in props)


def enc_connect(version, client_id, clean=True, keepalive=60, props=None, will=None,
                username=None, password=None, level=None, proto_name=None):
    """A CONNECT. version 3, 4 or 5; props: [(id, value)] or bytes (5.0); will: dict(topic,
    payload, qos=0, retain=False, props=None); level: the raw protocol level byte (e.g. 0x84
    for the 3.x bridge bit); proto_name overrides MQIsdp/MQTT."""
    name = proto_name if proto_name is not None else (b"MQIsdp" if version == 3 else b"MQTT")
    flags = 0x02 if clean else 0
    if will is not None:
        flags |= 0x04 | ((will.get("qos", 0) & 3) << 3) | (0x20 if will.get("retain") else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    body = mstr(name) + bytes((version if level is None else level, flags)) + u16(keepalive)
    if version == 5:
        pb = _props_bytes(props)
        body += varint(len(pb)) + pb
    body += mstr(client_id)
    if will is not None:
        if version == 5:
            wp = _props_bytes(will.get("props"))
            body += varint(len(wp)) + wp
        body += mstr(will["topic"]) + mstr(will.get("payload", b""))
    if username is not None:
        body += mstr(username)
    if password is not None:
        body += mstr(password)
    return packet(CONNECT, 0, body)


def enc_publish(version, topic, payload=b"", qos=0, pid=0, dup=False, retain=False, props=None):
    if isinstance(payload, str):
        payload = payload.encode()
    body = mstr(topic) + (u16(pid) if qos else b"")
    if version == 5:
        pb = _props_bytes(props)
        body += varint(len(pb)) + pb
    body += payload
    return packet(PUBLISH, (8 if dup else 0) | (qos << 1) | (1 if retain else 0), body)


def enc_subscribe(version, pid, subs, props=None):
    """subs: [(filter, options byte)] (QoS in bits 0-1; 5.0: No Local 0x04, Retain As
    Published 0x08, Retain Handling << 4)."""
    body = u16(pid)
    if version == 5:
        pb = _props_bytes(props)
        body += varint(len(pb)) + pb
    for f, o in subs:
        body += mstr(f) + bytes((o,))
    return packet(SUBSCRIBE, 2, body)


def enc_unsubscribe(version, pid, filters, props=None):
    body = u16(pid)
    if version == 5:
        pb = _props_bytes(props)
        body += varint(len(pb)) + pb
    for f in filters:
        body += mstr(f)
    return packet(UNSUBSCRIBE, 2, body)


def enc_ack(type_, pid, version=4, code=0):
    flags = 2 if type_ == PUBREL else 0
    if version == 5 and code:
        return packet(type_, flags, u16(pid) + bytes((code,)))
    return packet(type_, flags, u16(pid))


def enc_disconnect(version=4, code=0, props=None):
    if version == 5:
        pb = _props_bytes(props)
        return packet(DISCONNECT, 0, bytes((code,)) + varint(len(pb)) + pb)
    return b"\xe0\x00"


def frame_len(buf):
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
        mult <<= 7
    raise Malformed("remaining length longer than 4 bytes")


def decode(pkt, version=5):
    """One whole packet (either direction) as a dict: type (name), flags and the fields of its
    kind; props as a dict {id: [values]}; reason codes as code / codes."""
    t = pkt[0] >> 4
    flags = pkt[0] & 0x0F
    _, off = read_varint(pkt, 1)
    end = len(pkt)
    d = {"type": TYPE_NAMES.get(t, "type%d" % t), "flags": flags, "props": {}}

    def props_at(o):
        pl, o2 = parse_props(pkt, o)
        pd = {}
        for k, v in pl:
            pd.setdefault(k, []).append(v)
        d["props"] = pd
        return o2

    if t == CONNECT:
        name, off = _rd_str(pkt, off, end)
        level = pkt[off]
        cf = pkt[off + 1]
        d.update(protocol=name, level=level, version=level & 0x7F, clean=bool(cf & 2),
                 keepalive=(pkt[off + 2] << 8) | pkt[off + 3])
        off += 4
        if level & 0x7F == 5:
            off = props_at(off)
        d["client_id"], off = _rd_str(pkt, off, end)
    elif t == CONNACK:
        d["session_present"] = bool(pkt[off] & 1)
        d["code"] = pkt[off + 1]
        if version == 5 and off + 2 < end:
            props_at(off + 2)
    elif t == PUBLISH:
        qos = (flags >> 1) & 3
        d.update(qos=qos, dup=bool(flags & 8), retain=bool(flags & 1))
        d["topic"], off = _rd_str(pkt, off, end)
        d["pid"] = 0
        if qos:
            d["pid"] = (pkt[off] << 8) | pkt[off + 1]
            off += 2
        if version == 5:
            off = props_at(off)
        d["payload"] = bytes(pkt[off:])
    elif t in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        d["pid"] = (pkt[off] << 8) | pkt[off + 1]
        off += 2
        d["code"] = pkt[off] if off < end else 0
        if version == 5 and off + 1 < end:
            props_at(off + 1)
    elif t in (SUBACK, UNSUBACK):
        d["pid"] = (pkt[off] << 8) | pkt[off + 1]
        off += 2
        if version == 5:
            off = props_at(off)
        d["codes"] = list(pkt[off:])
    elif t in (SUBSCRIBE, UNSUBSCRIBE):
        d["pid"] = (pkt[off] << 8) | pkt[off + 1]
        off += 2
        if version == 5:
            off = props_at(off)
        subs = []
        while off < end:
            f, off = _rd_str(pkt, off, end)
            if t == SUBSCRIBE:
                subs.append((f, pkt[off]))
                off += 1
            else:
                subs.append((f, None))
        d["subs"] = subs
    elif t in (DISCONNECT, AUTH):
        d["code"] = pkt[off] if off < end else 0
        if version == 5 and off + 1 < end:
            props_at(off + 1)
    return d


# ----------------------------------------------------------------------------------------------
# limits

# (name, default, type, help). Every one is a constructor argument and a --flag (dashes).
OPTIONS = [
    ("rate", 200, int, "PUBLISHes per connection per fixed one-second window"),
    ("receive_max", 200, int, "Receive Maximum: unacknowledged QoS 1/2 PUBLISHes from a client"),
    ("bandwidth_in", 512 * 1024, int, "bytes/s read per connection (0: unlimited)"),
    ("bandwidth_out", 512 * 1024, int, "bytes/s written per connection (0: unlimited)"),
    ("max_packet", 256 * 1024, int, "Maximum Packet Size, bytes"),
    ("max_topic_len", 255, int, "characters in a topic"),
    ("max_topic_levels", 16, int, "levels in a topic"),
    ("max_level_len", 40, int, "characters in one topic level"),
    ("topic_alias_max", 10, int, "Topic Alias Maximum"),
    ("use_aliases", True, bool, "use topic aliases toward clients that allow them"),
    ("max_filters", 10, int, "topic filters in one SUBSCRIBE / UNSUBSCRIBE"),
    ("max_subs", 100, int, "subscriptions per session"),
    ("max_share_members", 200, int, "members of one shared subscription group"),
    ("session_expiry_min", 60, int, "smallest nonzero session expiry, s"),
    ("session_expiry_max", 86400, int, "largest session expiry, s"),
    ("min_keepalive", 60, int, "smallest nonzero keepalive, s"),
    ("max_will", 128, int, "Will topic + payload, bytes"),
    ("queue_limit", 1000, int, "messages queued or unacknowledged per session"),
    ("redeliver_period", 10.0, float, "seconds between sends of an unacknowledged message"),
    ("redeliver_tries", 4, int, "sends of an unacknowledged message before it is dropped"),
    ("refuse_delay", 0.1, float, "seconds before a refusal / violation DISCONNECT is sent"),
    ("puback_delay", 0.0, float, "seconds the broker holds its PUBACK / PUBREC"),
    ("connack_max_qos", None, int, "Maximum QoS value to put in the 5.0 CONNACK (default: none)"),
    ("v3_over_limit", "drop", str, "3.x PUBLISH past rate / Receive Maximum: drop or close"),
]
_OPT_NAMES = {o[0] for o in OPTIONS}


class Limits:
    def __init__(self, **kw):
        for name, default, _, _ in OPTIONS:
            setattr(self, name, default)
        self.update(**kw)

    def update(self, **kw):
        for k, v in kw.items():
            if k not in _OPT_NAMES:
                raise TypeError("unknown limit %r" % k)
            typ = next(o[2] for o in OPTIONS if o[0] == k)
            if v is not None:
                if typ is bool and isinstance(v, str):
                    v = v.lower() in ("1", "true", "yes", "on")
                else:
                    v = typ(v)
            if k == "v3_over_limit" and v not in ("drop", "close"):
                raise ValueError("v3_over_limit: drop or close")
            setattr(self, k, v)

    def as_dict(self):
        return {o[0]: getattr(self, o[0]) for o in OPTIONS}


# ----------------------------------------------------------------------------------------------
# tally


class ConnStats:
    """What one connection did, kept after it closed."""

    def __init__(self, index, peer, t_open, wall):
        self.index = index
        self.peer = peer
        self.t_open = t_open          # loop time (monotonic) of accept
        self.wall_open = wall
        self.t_close = None
        self.client_id = None
        self.version = None
        self.transport = "tcp"
        self.connack = None           # CONNACK code sent, None: none (yet)
        self.accepted = 0
        self.accepted_qos = [0, 0, 0]
        self.delivered = 0            # PUBLISHes sent to the client, first sends
        self.redelivered = 0          # resends (DUP) of unacknowledged ones
        self.acked = 0                # PUBACK / PUBCOMP from the client for our PUBLISHes
        self.no_match = 0             # accepted PUBLISHes no subscription matched
        self.dropped = collections.Counter()
        self.disconnect = None        # reason code of the broker's cut (3.x: what 5.0 would say)
        self.disconnect_sent = False  # a DISCONNECT packet went out (5.0)
        self.closed_by = None         # "client" (DISCONNECT / EOF) or "broker"
        self.client_disconnect = None  # reason code of the client's DISCONNECT
        self.throttled_in = 0
        self.throttled_out = 0
        self.times = array.array("d")  # accepted PUBLISHes, seconds since t_open
        self.win_k = -1
        self.win_n = 0
        self.windows = {}             # fixed window index -> accepted count
        self.max_fixed = 0
        self.slide = collections.deque()
        self.max_sliding = 0

    def on_accept(self, now, qos):
        self.accepted += 1
        self.accepted_qos[qos] += 1
        rel = now - self.t_open
        self.times.append(rel)
        k = int(rel)
        n = self.windows.get(k, 0) + 1
        self.windows[k] = n
        if n > self.max_fixed:
            self.max_fixed = n
        s = self.slide
        s.append(rel)
        lim = rel - 1.0
        while s[0] <= lim:
            s.popleft()
        if len(s) > self.max_sliding:
            self.max_sliding = len(s)

    def as_dict(self, times=False):
        d = {
            "index": self.index, "peer": self.peer, "client_id": self.client_id,
            "version": self.version, "transport": self.transport,
            "opened": self.wall_open,
            "duration": (self.t_close - self.t_open) if self.t_close is not None else None,
            "open": self.t_close is None, "connack": self.connack,
            "accepted": self.accepted, "accepted_qos": list(self.accepted_qos),
            "delivered": self.delivered, "redelivered": self.redelivered, "acked": self.acked,
            "no_match": self.no_match, "dropped": dict(self.dropped),
            "disconnect": _hex(self.disconnect), "disconnect_sent": self.disconnect_sent,
            "closed_by": self.closed_by, "client_disconnect": _hex(self.client_disconnect),
            "throttled_in": self.throttled_in, "throttled_out": self.throttled_out,
            "max_fixed": self.max_fixed, "max_sliding": self.max_sliding,
        }
        if times:
            d["publish_times"] = list(self.times)
            d["windows"] = {str(k): v for k, v in sorted(self.windows.items())}
        return d


def _hex(code):
    return None if code is None else "0x%02x" % code


class Tally:
    def __init__(self):
        self.reset()

    def reset(self):
        self.conns = []
        self.connacks = collections.Counter()       # "0x00" -> n
        self.no_connack = collections.Counter()     # reason -> n (closed without CONNACK)
        self.offline_dropped = collections.Counter()
        self.client_dropped = collections.defaultdict(collections.Counter)  # offline drops
        self.wills = 0

    def drop(self, reason, st=None, cid=None, n=1):
        if st is not None:
            st.dropped[reason] += n
        else:
            self.offline_dropped[reason] += n
            if cid is not None:
                self.client_dropped[cid][reason] += n

    def signature(self):
        """Changes whenever anything counted changes (cheap enough for twice a second)."""
        a = 0
        closed = 0
        for c in self.conns:
            a += (c.accepted + c.delivered + c.acked + c.redelivered + c.throttled_in +
                  c.throttled_out + sum(c.dropped.values()))
            closed += c.t_close is not None
        return (len(self.conns), a, closed, sum(self.connacks.values()),
                sum(self.no_connack.values()), sum(self.offline_dropped.values()), self.wills)

    def snapshot(self, times=False):
        tot = {"connections": len(self.conns), "accepted": 0, "accepted_qos": [0, 0, 0],
               "delivered": 0, "redelivered": 0, "acked": 0, "no_match": 0,
               "throttled_in": 0, "throttled_out": 0, "wills_published": self.wills}
        dropped = collections.Counter(self.offline_dropped)
        disc = collections.Counter()
        disc_sent = collections.Counter()
        clients = {}
        for c in self.conns:
            for k in ("accepted", "delivered", "redelivered", "acked", "no_match",
                      "throttled_in", "throttled_out"):
                tot[k] += getattr(c, k)
            for q in range(3):
                tot["accepted_qos"][q] += c.accepted_qos[q]
            dropped.update(c.dropped)
            if c.disconnect is not None:
                disc[_hex(c.disconnect)] += 1
                if c.disconnect_sent:
                    disc_sent[_hex(c.disconnect)] += 1
            if c.client_id is not None:
                cl = clients.setdefault(c.client_id, {
                    "connections": 0, "accepted": 0, "delivered": 0, "redelivered": 0,
                    "acked": 0, "dropped": collections.Counter(),
                    "disconnects": collections.Counter(), "max_fixed": 0})
                cl["connections"] += 1
                for k in ("accepted", "delivered", "redelivered", "acked"):
                    cl[k] += getattr(c, k)
                cl["dropped"].update(c.dropped)
                if c.disconnect is not None:
                    cl["disconnects"][_hex(c.disconnect)] += 1
                cl["max_fixed"] = max(cl["max_fixed"], c.max_fixed)
        for cid, cnt in self.client_dropped.items():
            cl = clients.setdefault(cid, {
                "connections": 0, "accepted": 0, "delivered": 0, "redelivered": 0, "acked": 0,
                "dropped": collections.Counter(), "disconnects": collections.Counter(),
                "max_fixed": 0})
            cl["dropped"].update(cnt)
        for cl in clients.values():
            cl["dropped"] = dict(cl["dropped"])
            cl["disconnects"] = dict(cl["disconnects"])
        tot["dropped"] = dict(dropped)
        tot["disconnects"] = dict(disc)
        tot["disconnect_packets"] = dict(disc_sent)
        tot["connacks"] = dict(self.connacks)
        tot["closed_without_connack"] = dict(self.no_connack)
        return {"totals": tot, "clients": clients,
                "connections": [c.as_dict(times) for c in self.conns]}


# ----------------------------------------------------------------------------------------------
# topics


def check_topic(topic_b, L):
    """(topic str, 0) when topic_b is a valid topic name within the limits; (None, reason
    code) otherwise: 0x81 not UTF-8 / U+0000, 0x90 wildcards or past the limits."""
    try:
        topic = topic_b.decode("utf-8")
    except UnicodeDecodeError:
        return None, 0x81
    if "\x00" in topic:
        return None, 0x81
    if not topic or "+" in topic or "#" in topic:
        return None, 0x90
    if len(topic) > L.max_topic_len:
        return None, 0x90
    levels = topic.split("/")
    if len(levels) > L.max_topic_levels:
        return None, 0x90
    for lv in levels:
        if len(lv) > L.max_level_len:
            return None, 0x90
    return topic, 0


def check_filter(f, L):
    """0 when f (a str, without $share/G/) is a valid topic filter within the limits, else
    0x8F."""
    if not f or len(f) > L.max_topic_len or "\x00" in f:
        return 0x8F
    levels = f.split("/")
    if len(levels) > L.max_topic_levels:
        return 0x8F
    for i, lv in enumerate(levels):
        if len(lv) > L.max_level_len:
            return 0x8F
        if "#" in lv and (lv != "#" or i != len(levels) - 1):
            return 0x8F
        if "+" in lv and lv != "+":
            return 0x8F
    return 0


def filter_matches(levels, topic):
    """levels: a filter split on '/'; topic: a str."""
    tl = topic.split("/")
    if topic.startswith("$") and levels[0] in ("+", "#"):
        return False
    for i, lv in enumerate(levels):
        if lv == "#":
            return True
        if i >= len(tl):
            return False
        if lv != "+" and lv != tl[i]:
            return False
    return len(tl) == len(levels)


# ----------------------------------------------------------------------------------------------
# broker state


class Msg:
    __slots__ = ("topic", "topic_b", "payload", "qos", "retain", "props", "expiry_at",
                 "publisher")

    def __init__(self, topic, topic_b, payload, qos, retain, props, expiry_at, publisher):
        self.topic = topic
        self.topic_b = topic_b
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.props = props          # 5.0 properties to forward (no alias, sub id, expiry)
        self.expiry_at = expiry_at  # loop time, or None
        self.publisher = publisher  # client id


class Out:
    """One message for one session: queued, then in flight until acknowledged."""
    __slots__ = ("msg", "qos", "retain", "subid", "pid", "state", "sends", "next_at")

    def __init__(self, msg, qos, retain, subid):
        self.msg = msg
        self.qos = qos
        self.retain = retain
        self.subid = subid
        self.pid = 0
        self.state = 0   # 0 PUBLISH sent, 1 PUBREL sent
        self.sends = 0
        self.next_at = 0.0


class Sub:
    __slots__ = ("full", "filter", "qos", "no_local", "rap", "rh", "subid", "group")

    def __init__(self, full, filt, qos, no_local, rap, rh, subid, group):
        self.full = full        # as subscribed, $share/G/... included
        self.filter = filt      # the topic filter part
        self.qos = qos
        self.no_local = no_local
        self.rap = rap
        self.rh = rh
        self.subid = subid
        self.group = group      # Group or None


class Node:
    __slots__ = ("kids", "subs", "groups")

    def __init__(self):
        self.kids = {}
        self.subs = {}     # client id -> (Session, Sub)
        self.groups = {}   # key -> Group


class Group:
    __slots__ = ("key", "ordered", "members", "sticky")

    def __init__(self, key, ordered):
        self.key = key
        self.ordered = ordered
        self.members = {}   # client id -> (Session, Sub)
        self.sticky = {}    # publisher -> client id ($oshare)

    def pick(self, publisher):
        if not self.members:
            return None
        if self.ordered:
            cid = self.sticky.get(publisher)
            if cid is None or cid not in self.members:
                best = None
                for m in self.members:
                    h = hashlib.blake2b(("%s\x00%s" % (publisher, m)).encode(),
                                        digest_size=8).digest()
                    if best is None or h > best[0]:
                        best = (h, m)
                cid = best[1]
                self.sticky[publisher] = cid
            return self.members[cid]
        online = [m for m in self.members.values() if m[0].conn is not None and m[0].conn.ready]
        return random.choice(online or list(self.members.values()))


class Session:
    __slots__ = ("cid", "subs", "conn", "expiry", "expire_handle", "will_handle", "queue",
                 "inflight", "next_pid", "redeliver", "timer")

    def __init__(self, cid):
        self.cid = cid
        self.subs = {}          # full filter -> Sub
        self.conn = None
        self.expiry = 0
        self.expire_handle = None
        self.will_handle = None
        self.queue = collections.deque()   # Out
        self.inflight = {}      # pid -> Out
        self.next_pid = 1
        self.redeliver = collections.deque()  # (time, pid, Out)
        self.timer = None

    def alloc_pid(self):
        pid = self.next_pid
        inflight = self.inflight
        while pid in inflight:
            pid = pid % 65535 + 1
        self.next_pid = pid % 65535 + 1
        return pid


# ----------------------------------------------------------------------------------------------
# one connection


_PINGRESP = b"\xd0\x00"


class Conn(asyncio.Protocol):
    def __init__(self, broker, ws=None):
        self.b = broker
        self.L = broker.L
        self.loop = broker.loop
        self.ws = ws
        self.transport = None
        self.buf = b""
        self.version = 0
        self.cid = None
        self.session = None
        self.st = None
        self.connected = False
        self.ready = False
        self.closing = False
        self.lost = False
        self.clean_disconnect = False
        self.will = None
        self.will_delay = 0
        self.alias_in = {}
        self.alias_out = {}
        self.alias_slots = []
        self.alias_next = 0
        self.alias_max_out = 0
        self.client_max_packet = 0
        self.client_recv_max = 65535
        self.rx_q1 = set()
        self.rx_q2 = set()
        self.win_k = 0
        self.win_n = 0
        self.t0 = 0.0
        self.keepalive = 0
        self.last_rx = 0.0
        self.ka_handle = None
        self.wq = []
        self.flush_pending = False
        self.wpaused = False
        self.rpaused = False
        self.in_tok = 0.0
        self.in_t = 0.0
        self.out_tok = 0.0
        self.out_t = 0.0
        self.setup_handle = None

    # ------------------------------------------------------------------ asyncio
    def connection_made(self, transport):
        self.transport = transport
        now = self.loop.time()
        self.t0 = self.last_rx = self.in_t = self.out_t = now
        self.in_tok = float(self.L.bandwidth_in)
        self.out_tok = float(self.L.bandwidth_out)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        peer = transport.get_extra_info("peername")
        b = self.b
        self.st = ConnStats(len(b.tally.conns), "%s:%s" % peer[:2] if peer else "?", now,
                            time.time())
        if self.ws is not None:
            self.st.transport = "ws"
        b.tally.conns.append(self.st)
        b.conns.add(self)
        self.setup_handle = self.loop.call_later(20.0, self._no_connect)

    def _no_connect(self):
        if not self.connected and not self.closing:
            self.b.tally.no_connack["no_connect"] += 1
            self._close_now()

    def data_received(self, data):
        if self.closing:
            return
        now = self.loop.time()
        self.last_rx = now
        nin = len(data)
        if self.buf:
            data = self.buf + data
        pos = 0
        n = len(data)
        maxp = self.L.max_packet
        try:
            while n - pos >= 2:
                # remaining length (a varint of at most 4 bytes)
                i = pos + 1
                c = data[i]
                i += 1
                if c < 0x80:
                    rl = c
                else:
                    rl = c & 0x7F
                    mult = 128
                    while True:
                        if i >= n:
                            rl = -1
                            break
                        c = data[i]
                        i += 1
                        rl += (c & 0x7F) * mult
                        if c < 0x80:
                            break
                        if i - pos > 4:
                            raise Malformed("remaining length longer than 4 bytes")
                        mult <<= 7
                    if rl < 0:
                        break
                if i - pos + rl > maxp:
                    self.violation(0x95, "packet_too_large")
                    return
                end = i + rl
                if end > n:
                    break
                self.on_packet(data[pos], data, i, end, now)
                pos = end
                if self.closing:
                    return
        except (Malformed, IndexError, struct.error, ValueError, UnicodeDecodeError):
            self.violation(0x81, "malformed")
            return
        self.buf = data[pos:] if pos < n else b""
        rate = self.L.bandwidth_in
        if rate and not self.closing:
            tok = self.in_tok + (now - self.in_t) * rate
            if tok > rate:
                tok = rate
            tok -= nin
            self.in_t = now
            self.in_tok = tok
            if tok < 0 and not self.rpaused:
                self.rpaused = True
                self.transport.pause_reading()
                self.st.throttled_in += 1
                self.loop.call_later(-tok / rate, self._resume_read)

    def _resume_read(self):
        self.rpaused = False
        if not self.closing and not self.lost:
            self.transport.resume_reading()

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        if self.lost:
            return
        self.lost = True
        self.ready = False
        b = self.b
        b.conns.discard(self)
        st = self.st
        if st.t_close is None:
            st.t_close = self.loop.time()
        if st.closed_by is None:
            st.closed_by = "client"
        for h in (self.ka_handle, self.setup_handle):
            if h is not None:
                h.cancel()
        sess = self.session
        self.session = None
        if sess is not None and sess.conn is self:
            sess.conn = None
            if sess.timer is not None:
                sess.timer.cancel()
                sess.timer = None
            sess.redeliver.clear()
            if sess.expiry == 0:
                b.end_session(sess, "session_ended")
            else:
                sess.expire_handle = self.loop.call_later(sess.expiry, b.expire_session, sess)
        if self.will is not None and not self.clean_disconnect:
            will, self.will = self.will, None
            if self.will_delay > 0 and sess is not None and sess.cid in b.sessions:
                # published after the delay, or when the session ends first (end_session);
                # not at all if the session is resumed before (attach)
                sess.will_handle = (self.loop.call_later(self.will_delay, b.publish_will, will,
                                                         sess), will)
            else:
                b.publish_will(will, None)
        if b.verbose:
            b.log("conn #%d %s closed (%s%s)" % (st.index, self.cid, st.closed_by,
                                                 ", 0x%02x" % st.disconnect
                                                 if st.disconnect is not None else ""))

    def pause_writing(self):
        self.wpaused = True

    def resume_writing(self):
        self.wpaused = False
        if self.session is not None and self.ready:
            self.b.pump(self.session)

    # ------------------------------------------------------------------ writing
    def write(self, data):
        self.wq.append(data)
        if not self.flush_pending:
            self.flush_pending = True
            self.loop.call_soon(self.flush)

    def flush(self):
        self.flush_pending = False
        if not self.wq or self.lost:
            self.wq = []
            return
        rate = self.L.bandwidth_out
        if rate:
            now = self.loop.time()
            tok = self.out_tok + (now - self.out_t) * rate
            if tok > rate:
                tok = rate
            self.out_t = now
            if tok < 0:
                self.out_tok = tok
                self.flush_pending = True
                self.st.throttled_out += 1
                self.loop.call_later(-tok / rate, self.flush)
                return
        q = self.wq
        self.wq = []
        data = q[0] if len(q) == 1 else b"".join(q)
        if rate:
            self.out_tok = tok - len(data)
        self.transport.write(data)

    def _close_now(self):
        """Flushes what is queued (bandwidth aside) and closes."""
        if self.lost:
            return
        self.closing = True
        self.ready = False
        if self.wq:
            q = self.wq
            self.wq = []
            self.transport.write(b"".join(q))
        self.transport.close()

    # ------------------------------------------------------------------ going away
    def violation(self, code, what, now=False, farewell=True):
        """The broker cuts this connection for a reason (code: the 5.0 reason code; 3.x
        connections are closed without a packet). Nothing more is read; after refuse_delay
        (now: at once) the DISCONNECT goes out and the socket is closed."""
        if self.closing:
            return
        self.closing = True
        self.ready = False
        st = self.st
        st.disconnect = code
        st.closed_by = "broker"
        if not self.rpaused:
            self.rpaused = True
            try:
                self.transport.pause_reading()
            except (RuntimeError, AttributeError):
                pass
        if self.b.verbose:
            self.b.log("conn #%d %s: %s -> 0x%02x" % (st.index, self.cid, what, code))

        def fin():
            if self.lost:
                return
            if farewell and self.version == 5 and self.connected:
                self.wq.append(enc_disconnect(5, code))
                st.disconnect_sent = True
            self._close_now()

        if now or self.L.refuse_delay <= 0:
            fin()
        else:
            self.loop.call_later(self.L.refuse_delay, fin)

    def refuse(self, code, what, connack=True):
        """A CONNECT refused: CONNACK code (5.0 code; mapped for 3.x) or, connack False, the
        socket closed without one; both after refuse_delay."""
        self.closing = True
        st = self.st
        st.closed_by = "broker"
        if not self.rpaused:
            self.rpaused = True
            self.transport.pause_reading()
        b = self.b
        if connack:
            if self.version != 5:
                code = {0x84: 1, 0x85: 2, 0x88: 3, 0x86: 4, 0x87: 5}.get(code, 3)
            st.connack = code
            b.tally.connacks[_hex(code)] += 1
        else:
            b.tally.no_connack[what] += 1
        if b.verbose:
            b.log("conn #%d refused: %s (%s)" % (st.index, what,
                                                 "CONNACK 0x%02x" % code if connack
                                                 else "no CONNACK"))

        def fin():
            if self.lost:
                return
            if connack:
                if self.version == 5:
                    self.wq.append(packet(CONNACK, 0, b"\x00" + bytes((code,)) + b"\x00"))
                else:
                    self.wq.append(packet(CONNACK, 0, b"\x00" + bytes((code,))))
            self._close_now()

        if self.L.refuse_delay > 0:
            self.loop.call_later(self.L.refuse_delay, fin)
        else:
            fin()

    def over_limit(self, code, what):
        """Rate / Receive Maximum exceeded: 5.0 DISCONNECT code; 3.x drop (or close)."""
        if self.version == 5 or self.L.v3_over_limit == "close":
            self.violation(code, what)
        else:
            self.st.dropped[what] += 1

    # ------------------------------------------------------------------ packets
    def on_packet(self, b0, data, off, end, now):
        t = b0 >> 4
        if t == PUBLISH:
            if not self.ready:
                return self._not_connected()
            return self.on_publish(b0, data, off, end, now)
        if t == PUBACK or t == PUBCOMP:
            if not self.ready:
                return self._not_connected()
            pid = (data[off] << 8) | data[off + 1]
            return self.b.on_ack(self, t, pid)
        if t == PUBREC:
            if not self.ready:
                return self._not_connected()
            pid = (data[off] << 8) | data[off + 1]
            code = data[off + 2] if self.version == 5 and end - off > 2 else 0
            return self.b.on_pubrec(self, pid, code)
        if t == PUBREL:
            if not self.ready:
                return self._not_connected()
            pid = (data[off] << 8) | data[off + 1]
            if pid in self.rx_q2:
                self.rx_q2.discard(pid)
                self.write(bytes((0x70, 2)) + data[off:off + 2])
            elif self.version == 5:
                self.write(bytes((0x70, 3)) + data[off:off + 2] + b"\x92")
            else:
                self.write(bytes((0x70, 2)) + data[off:off + 2])
            return
        if t == CONNECT:
            if self.connected:
                return self.violation(0x82, "second_connect")
            return self.on_connect(data, off, end)
        if not self.ready:
            return self._not_connected()
        if t == PINGREQ:
            return self.write(_PINGRESP)
        if t == SUBSCRIBE:
            return self.b.on_subscribe(self, data, off, end)
        if t == UNSUBSCRIBE:
            return self.b.on_unsubscribe(self, data, off, end)
        if t == DISCONNECT:
            return self.on_disconnect(data, off, end)
        if t == AUTH:
            return self.violation(0x8C, "auth_not_supported")
        return self.violation(0x81, "bad_packet_type")

    def _not_connected(self):
        if not self.connected:
            self.b.tally.no_connack["first_packet_not_connect"] += 1
            self.st.closed_by = "broker"
            self._close_now()

    def on_publish(self, b0, data, off, end, now):
        qos = (b0 >> 1) & 3
        if qos == 3:
            return self.violation(0x81, "qos3")
        tl = (data[off] << 8) | data[off + 1]
        off += 2
        topic_b = data[off:off + tl]
        off += tl
        pid = 0
        if qos:
            pid = (data[off] << 8) | data[off + 1]
            off += 2
            if qos == 2 and pid in self.rx_q2:
                # a resend of a QoS 2 message we hold: acknowledge again, deliver nothing
                self.write(bytes((0x50, 2)) + data[off - 2:off])
                return
        if off > end:
            raise Malformed("publish header overruns the packet")
        L = self.L
        # Receive Maximum first, then the rate (BifroMQ's order)
        if qos and len(self.rx_q1) + len(self.rx_q2) >= L.receive_max:
            return self.over_limit(0x93, "receive_max")
        k = int(now - self.t0)
        if k != self.win_k:
            self.win_k = k
            self.win_n = 0
        if self.win_n >= L.rate:
            return self.over_limit(0x96, "rate")
        self.win_n += 1
        props = b""
        expiry_at = None
        if self.version == 5:
            plen = data[off]
            if plen == 0:
                off += 1
            else:
                pl, off = parse_props(data, off, end)
                alias = None
                keep = []
                for pid_, v in pl:
                    if pid_ == P_TOPIC_ALIAS:
                        alias = v
                    elif pid_ == P_SUB_ID:
                        return self.violation(0x82, "sub_id_in_publish")
                    elif pid_ == P_MESSAGE_EXPIRY:
                        expiry_at = now + v
                    else:
                        keep.append(prop(pid_, v))
                props = b"".join(keep)
                if alias is not None:
                    if alias == 0 or alias > L.topic_alias_max:
                        return self.violation(0x94, "topic_alias_invalid")
                    if tl == 0:
                        topic_b = self.alias_in.get(alias)
                        if topic_b is None:
                            return self.violation(0x82, "unknown_topic_alias")
                    else:
                        self.alias_in[alias] = topic_b
            if tl == 0 and not topic_b:
                return self.violation(0x82, "empty_topic")
        payload = data[off:end]
        if type(topic_b) is not bytes:
            topic_b = bytes(topic_b)
        b = self.b
        topic = b.topic_cache.get(topic_b)
        if topic is None:
            topic, code = check_topic(topic_b, L)
            if topic is None:
                if code == 0x81 or qos == 0 or self.version != 5:
                    self.st.dropped["topic_invalid"] += 1
                    return self.violation(code, "topic_invalid")
                self.st.dropped["topic_invalid"] += 1
                self.write(bytes(((0x40 if qos == 1 else 0x50), 3)) + u16(pid) + b"\x90")
                return
            if len(b.topic_cache) > 100000:
                b.topic_cache.clear()
            b.topic_cache[topic_b] = topic
        self.st.on_accept(now, qos)
        retain = b0 & 1
        msg = Msg(topic, topic_b, bytes(payload), qos, retain, props, expiry_at, self.cid)
        if retain:
            b.retain(msg)
        n = b.route(msg)
        if n == 0:
            self.st.no_match += 1
        if qos:
            code = 0x10 if n == 0 and self.version == 5 else 0
            if code:
                ack = bytes((0x40 if qos == 1 else 0x50, 3)) + u16(pid) + b"\x10"
            else:
                ack = bytes((0x40 if qos == 1 else 0x50, 2)) + u16(pid)
            if qos == 2:
                self.rx_q2.add(pid)
            delay = L.puback_delay
            if delay > 0:
                if qos == 1:
                    self.rx_q1.add(pid)
                self.loop.call_later(delay, self._late_ack, qos, pid, ack)
            else:
                self.write(ack)

    def _late_ack(self, qos, pid, ack):
        if self.lost or self.closing:
            return
        if qos == 1:
            self.rx_q1.discard(pid)
        self.write(ack)

    def on_disconnect(self, data, off, end):
        code = data[off] if self.version == 5 and end > off else 0
        self.st.client_disconnect = code
        self.st.closed_by = "client"
        if self.version == 5 and end - off > 1:
            pl, _ = parse_props(data, off + 1, end)
            for k, v in pl:
                if k == P_SESSION_EXPIRY and self.session is not None:
                    if self.session.expiry == 0 and v != 0:
                        return self.violation(0x82, "session_expiry_on_disconnect")
                    self.session.expiry = self.b.clamp_expiry(v)
        if code != 0x04:
            self.clean_disconnect = True
            self.will = None
        self.closing = True
        self.ready = False
        self._close_now()

    def on_connect(self, data, off, end):
        b = self.b
        L = self.L
        if self.setup_handle is not None:
            self.setup_handle.cancel()
            self.setup_handle = None
        name, off = _rd_str(data, off, end)
        level = data[off]
        cflags = data[off + 1]
        keepalive = (data[off + 2] << 8) | data[off + 3]
        off += 4
        st = self.st
        if level & 0x80:
            return self.refuse(0, "bridge_bit", connack=False)
        if level not in (3, 4, 5) or name != (b"MQIsdp" if level == 3 else b"MQTT"):
            return self.refuse(0, "bad_protocol", connack=False)
        self.version = level
        st.version = {3: "3.1", 4: "3.1.1", 5: "5"}[level]
        if cflags & 1:
            return self.refuse(0, "reserved_flag", connack=False)
        props = {}
        if level == 5:
            pl, off = parse_props(data, off, end)
            for k, v in pl:
                props[k] = v
        cid_b, off = _rd_str(data, off, end)
        will = None
        wprops = {}
        if cflags & 0x04:
            if level == 5:
                wpl, off = parse_props(data, off, end)
                for k, v in wpl:
                    wprops[k] = v
            wt, off = _rd_str(data, off, end)
            wp, off = _rd_str(data, off, end)
            will = (wt, wp, (cflags >> 3) & 3, bool(cflags & 0x20))
        cid = cid_b.decode("utf-8")
        st.client_id = cid
        self.cid = cid
        # BifroMQ's checks, in its order
        if level == 5:
            mp = props.get(P_MAX_PACKET)
            if mp is not None and (mp > L.max_packet or mp < 2):
                return self.refuse(0x83, "max_packet_size_too_big")
            ta = props.get(P_TOPIC_ALIAS_MAX, 0)
            if ta > L.topic_alias_max:
                return self.refuse(0x97, "topic_alias_max_too_big")
            if props.get(P_RECEIVE_MAX) == 0:
                return self.refuse(0x82, "receive_max_zero")
        if will is not None:
            if will[2] == 3:
                return self.refuse(0, "will_qos3", connack=False)
            if len(will[0]) + len(will[1]) > L.max_will:
                if level == 5:
                    return self.refuse(0x95, "will_too_big")
                return self.refuse(0, "will_too_big", connack=False)
            wtopic, code = check_topic(will[0], L)
            if wtopic is None:
                if level == 5:
                    return self.refuse(0x90, "will_topic_invalid")
                return self.refuse(0, "will_topic_invalid", connack=False)
        clean = bool(cflags & 2)
        assigned = None
        if not cid:
            if not clean:
                return self.refuse(0x85, "empty_client_id")
            cid = assigned = "auto-%08x" % random.getrandbits(32)
            self.cid = st.client_id = cid
        # accepted
        self.connected = True
        if level == 5:
            self.client_max_packet = props.get(P_MAX_PACKET, 0)
            self.client_recv_max = props.get(P_RECEIVE_MAX, 65535)
            if L.use_aliases:
                self.alias_max_out = props.get(P_TOPIC_ALIAS_MAX, 0)
            req_exp = props.get(P_SESSION_EXPIRY)
            expiry = self.b.clamp_expiry(req_exp or 0)
        else:
            req_exp = None
            expiry = 0 if clean else L.session_expiry_max
        ka = keepalive
        if ka > 0 and ka < L.min_keepalive:
            ka = L.min_keepalive
        self.keepalive = ka
        if will is not None:
            wmsg_props = b"".join(prop(k, v) for k, v in wprops.items()
                                  if k not in (P_WILL_DELAY, P_MESSAGE_EXPIRY))
            self.will = Msg(wtopic, will[0], will[1], will[2], will[3], wmsg_props, None, cid)
            self.will_delay = wprops.get(P_WILL_DELAY, 0)
        present = b.attach(self, cid, clean, expiry)
        # CONNACK
        if level == 5:
            cp = [prop(P_RECEIVE_MAX, L.receive_max), prop(P_TOPIC_ALIAS_MAX, L.topic_alias_max),
                  prop(P_MAX_PACKET, L.max_packet)]
            if ka != keepalive:
                cp.append(prop(P_SERVER_KEEP_ALIVE, ka))
            if req_exp is None or req_exp != expiry:
                cp.append(prop(P_SESSION_EXPIRY, expiry))
            if assigned is not None:
                cp.append(prop(P_ASSIGNED_CLIENT_ID, assigned))
            if L.connack_max_qos is not None:
                cp.append(bytes((P_MAX_QOS, L.connack_max_qos & 0xFF)))
            pb = b"".join(cp)
            self.write(packet(CONNACK, 0, bytes((1 if present else 0, 0)) + varint(len(pb)) + pb))
        else:
            self.write(packet(CONNACK, 0, bytes((1 if present else 0, 0))))
        st.connack = 0
        b.tally.connacks["0x00"] += 1
        self.ready = True
        if ka:
            self.ka_handle = self.loop.call_later(ka * 1.5, self._ka_check)
        if b.verbose:
            b.log("conn #%d %s connected v%s clean=%d expiry=%d ka=%d present=%d" % (
                st.index, cid, st.version, clean, expiry, ka, present))
        b.resume_session(self.session)

    def _ka_check(self):
        self.ka_handle = None
        if self.lost or self.closing:
            return
        idle = self.loop.time() - self.last_rx
        lim = self.keepalive * 1.5
        if idle >= lim:
            self.violation(0x8D, "keepalive", now=True)
        else:
            self.ka_handle = self.loop.call_later(lim - idle, self._ka_check)

    # ------------------------------------------------------------------ sending
    def send_pub(self, out, pid, dup):
        """Writes one PUBLISH for out. False when it could not be sent (expired, too big for
        the client), counted as dropped."""
        msg = out.msg
        topic_b = msg.topic_b
        qos = out.qos
        if self.version == 5:
            props = msg.props
            if msg.expiry_at is not None:
                left = int(msg.expiry_at - self.loop.time())
                if left <= 0:
                    self.st.dropped["expired"] += 1
                    return False
                props += prop(P_MESSAGE_EXPIRY, left)
            if out.subid:
                props += b"\x0b" + varint(out.subid)
            if self.alias_max_out:
                a = self.alias_out.get(topic_b)
                if a is None:
                    a = self._new_alias(topic_b)
                elif not dup:
                    topic_b = b""
                props += b"\x23" + u16(a)
            vh = u16(len(topic_b)) + topic_b + (u16(pid) if qos else b"") + varint(
                len(props)) + props
        else:
            vh = u16(len(topic_b)) + topic_b + (u16(pid) if qos else b"")
        rl = len(vh) + len(msg.payload)
        hdr = bytes((0x30 | (8 if dup else 0) | (qos << 1) | (1 if out.retain else 0),)) + \
            varint(rl)
        if self.client_max_packet and len(hdr) + rl > self.client_max_packet:
            self.st.dropped["too_large_for_client"] += 1
            return False
        self.write(hdr + vh)
        self.write(msg.payload)
        return True

    def _new_alias(self, topic_b):
        mx = self.alias_max_out
        slots = self.alias_slots
        if len(slots) < mx:
            slots.append(topic_b)
            a = len(slots)
        else:
            i = self.alias_next
            self.alias_next = (i + 1) % mx
            old = slots[i]
            self.alias_out.pop(old, None)
            slots[i] = topic_b
            a = i + 1
        self.alias_out[topic_b] = a
        return a


# ----------------------------------------------------------------------------------------------
# WebSocket (RFC 6455) in front of a Conn

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_WS_PROTOCOLS = ("mqtt", "mqttv3.1", "mqttv3.1.1")


def _unmask(payload, key):
    n = len(payload)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def ws_frame(opcode, payload):
    n = len(payload)
    if n < 126:
        h = bytes((0x80 | opcode, n))
    elif n < 65536:
        h = bytes((0x80 | opcode, 126)) + struct.pack(">H", n)
    else:
        h = bytes((0x80 | opcode, 127)) + struct.pack(">Q", n)
    return h + payload


class WsConn(asyncio.Protocol):
    """HTTP upgrade on /mqtt, then binary frames carrying MQTT bytes to an inner Conn (which
    sees this object as its transport)."""

    def __init__(self, broker):
        self.b = broker
        self.inner = Conn(broker, ws=self)
        self.tr = None
        self.buf = b""
        self.upgraded = False
        self.closed = False

    # transport face for the inner Conn
    def write(self, data):
        if not self.closed:
            self.tr.write(ws_frame(2, data))

    def close(self):
        if not self.closed:
            self.closed = True
            self.tr.write(ws_frame(8, b"\x03\xe8"))
            self.tr.close()

    def pause_reading(self):
        self.tr.pause_reading()

    def resume_reading(self):
        self.tr.resume_reading()

    def get_extra_info(self, name, default=None):
        return self.tr.get_extra_info(name, default)

    def is_closing(self):
        return self.tr.is_closing()

    # asyncio
    def connection_made(self, tr):
        self.tr = tr

    def pause_writing(self):
        self.inner.pause_writing()

    def resume_writing(self):
        self.inner.resume_writing()

    def connection_lost(self, exc):
        self.closed = True
        if self.upgraded:
            self.inner.connection_lost(exc)

    def _http_error(self, status):
        self.tr.write(("HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                       % status).encode())
        self.closed = True
        self.tr.close()
        self.b.tally.no_connack["ws_" + status.split()[0]] += 1

    def data_received(self, data):
        self.buf += data
        if not self.upgraded:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                if len(self.buf) > 16384:
                    self._http_error("431 Request Header Fields Too Large")
                return
            head = self.buf[:i].decode("latin-1").split("\r\n")
            self.buf = self.buf[i + 4:]
            parts = head[0].split()
            hdrs = {}
            for line in head[1:]:
                k, _, v = line.partition(":")
                hdrs[k.strip().lower()] = v.strip()
            if len(parts) < 2 or parts[0] != "GET":
                return self._http_error("405 Method Not Allowed")
            if urllib.parse.urlsplit(parts[1]).path != "/mqtt":
                return self._http_error("404 Not Found")
            key = hdrs.get("sec-websocket-key")
            if hdrs.get("upgrade", "").lower() != "websocket" or not key:
                return self._http_error("400 Bad Request")
            offered = [p.strip() for p in hdrs.get("sec-websocket-protocol", "").split(",")
                       if p.strip()]
            chosen = next((p for p in offered if p in _WS_PROTOCOLS), None)
            accept = base64.b64encode(hashlib.sha1(key.encode() + _WS_GUID).digest()).decode()
            resp = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n" % accept)
            if chosen:
                resp += "Sec-WebSocket-Protocol: %s\r\n" % chosen
            self.tr.write((resp + "\r\n").encode())
            self.upgraded = True
            self.inner.connection_made(self)
        self._frames()

    def _frames(self):
        buf = self.buf
        pos = 0
        out = []
        while not self.closed:
            if len(buf) - pos < 2:
                break
            b0, b1 = buf[pos], buf[pos + 1]
            op = b0 & 0x0F
            masked = b1 & 0x80
            n = b1 & 0x7F
            h = pos + 2
            if n == 126:
                if len(buf) - h < 2:
                    break
                n = struct.unpack_from(">H", buf, h)[0]
                h += 2
            elif n == 127:
                if len(buf) - h < 8:
                    break
                n = struct.unpack_from(">Q", buf, h)[0]
                h += 8
            if not masked:
                self.close()
                return
            if len(buf) - h < 4 + n:
                break
            key = buf[h:h + 4]
            payload = _unmask(buf[h + 4:h + 4 + n], key)
            pos = h + 4 + n
            if op in (0, 2):
                out.append(payload)
            elif op == 8:
                self.close()
                break
            elif op == 9:
                self.tr.write(ws_frame(10, payload))
            elif op == 10:
                pass
            else:
                self.close()
                break
        self.buf = buf[pos:]
        if out and not self.closed:
            self.inner.data_received(b"".join(out))


# ----------------------------------------------------------------------------------------------
# the broker


class BifroBroker:
    """The broker. Construct with limits as keyword arguments (see OPTIONS), then start()
    (runs an event loop in a thread) or, in an asyncio program, await start_async()."""

    def __init__(self, host="127.0.0.1", port=0, ws_port=None, control_port=None,
                 stats_file=None, stats_times=False, verbose=False, log=None, **limits):
        self.L = Limits(**limits)
        self.host = host
        self.port = port
        self.ws_port = ws_port
        self.control_port = control_port
        self.stats_file = stats_file
        self.stats_times = stats_times
        self.verbose = verbose
        self._log = log
        self.loop = None
        self.thread = None
        self.servers = []
        self.conns = set()
        self.sessions = {}
        self.root = Node()
        self.groups = {}
        self.match_cache = {}
        self.topic_cache = {}
        self.retained = {}
        self.tally = Tally()
        self._stopped = None
        self._stats_sig = None
        self._stats_task = None

    def log(self, text):
        line = "bifromq_broker: %s" % text
        if self._log:
            self._log(line)
        else:
            print(line, file=sys.stderr, flush=True)

    @property
    def url(self):
        return "mqtt://%s:%d" % (self.host, self.port)

    # ------------------------------------------------------------------ lifecycle
    async def start_async(self):
        self.loop = asyncio.get_running_loop()
        srv = await self.loop.create_server(lambda: Conn(self), self.host, self.port,
                                            reuse_address=True, backlog=256)
        self.servers.append(srv)
        self.port = srv.sockets[0].getsockname()[1]
        if self.ws_port is not None:
            srv = await self.loop.create_server(lambda: WsConn(self), self.host, self.ws_port,
                                                reuse_address=True)
            self.servers.append(srv)
            self.ws_port = srv.sockets[0].getsockname()[1]
        if self.control_port is not None:
            srv = await asyncio.start_server(self._control, "127.0.0.1", self.control_port,
                                             reuse_address=True)
            self.servers.append(srv)
            self.control_port = srv.sockets[0].getsockname()[1]
        if self.stats_file:
            self._stats_task = self.loop.create_task(self._stats_writer())
        return self

    async def stop_async(self):
        for s in self.servers:
            s.close()
        for c in list(self.conns):
            if c.ready and c.version == 5:
                c.wq.append(enc_disconnect(5, 0x8B))
            c._close_now()
        if self._stats_task is not None:
            self._stats_task.cancel()
        await asyncio.sleep(0.05)
        if self.stats_file:
            self.write_stats()

    def start(self):
        """Runs the broker in a thread of its own; returns when it listens."""
        ready = threading.Event()
        err = []

        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._stopped = asyncio.Event()
            try:
                loop.run_until_complete(self.start_async())
            except Exception as e:  # reported to start()
                err.append(e)
                ready.set()
                return
            ready.set()
            loop.run_until_complete(self._stopped.wait())
            loop.run_until_complete(self.stop_async())
            loop.close()

        self.thread = threading.Thread(target=run, name="bifromq-broker", daemon=True)
        self.thread.start()
        ready.wait(10)
        if err:
            raise err[0]
        return self

    def stop(self):
        if self.thread is not None and self.loop is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self._stopped.set)
            except RuntimeError:
                pass
            self.thread.join(10)

    def call(self, fn, *args, timeout=10):
        """fn(*args) in the broker's loop; its result."""
        if self.thread is None or threading.current_thread() is self.thread:
            return fn(*args)
        import concurrent.futures
        fut = concurrent.futures.Future()

        def run():
            try:
                fut.set_result(fn(*args))
            except Exception as e:
                fut.set_exception(e)

        self.loop.call_soon_threadsafe(run)
        return fut.result(timeout)

    # ------------------------------------------------------------------ API
    def stats(self, times=False):
        """The tally as a dict: totals, clients (per client id), connections (each with
        accepted, delivered, dropped by reason, disconnect code, max_fixed, max_sliding and,
        times=True, publish_times and windows) and sessions."""
        return self.call(self._stats, times)

    def _stats(self, times=False):
        d = self.tally.snapshot(times)
        d["sessions"] = {cid: {"online": s.conn is not None, "queued": len(s.queue),
                               "inflight": len(s.inflight), "subscriptions": sorted(s.subs),
                               "expiry": s.expiry}
                         for cid, s in self.sessions.items()}
        d["retained"] = len(self.retained)
        d["limits"] = self.L.as_dict()
        return d

    def set(self, **kw):
        """Changes limits at run time (e.g. rate=50): open connections see them at once."""
        return self.call(self._set, kw)

    def _set(self, kw):
        self.L.update(**kw)
        if self.verbose:
            self.log("limits now %s" % kw)
        return self.L.as_dict()

    def set_rate(self, n):
        return self.set(rate=n)

    def reset_tally(self):
        def r():
            self.tally.reset()
            for c in self.conns:  # open connections stay in the tally
                self.tally.conns.append(c.st)
        return self.call(r)

    def write_stats(self):
        d = self._stats(self.stats_times)
        tmp = self.stats_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(d, f)
        os.replace(tmp, self.stats_file)

    async def _stats_writer(self):
        while True:
            sig = self.tally.signature()
            if sig != self._stats_sig:
                self._stats_sig = sig
                try:
                    self.write_stats()
                except OSError as e:
                    self.log("stats file: %s" % e)
            await asyncio.sleep(0.5)

    async def _control(self, reader, writer):
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            while True:
                h = await asyncio.wait_for(reader.readline(), 10)
                if h in (b"\r\n", b"\n", b""):
                    break
            parts = line.decode("latin-1").split()
            u = urllib.parse.urlsplit(parts[1] if len(parts) > 1 else "/")
            q = dict(urllib.parse.parse_qsl(u.query))
            status = "200 OK"
            try:
                if u.path == "/stats":
                    body = self._stats(q.get("times") in ("1", "true"))
                elif u.path == "/limits":
                    body = self.L.as_dict()
                elif u.path == "/set":
                    body = self._set({k: (None if v in ("", "none") else v)
                                      for k, v in q.items()})
                elif u.path == "/reset":
                    self.tally.reset()
                    for c in self.conns:
                        self.tally.conns.append(c.st)
                    body = {"reset": True}
                else:
                    status, body = "404 Not Found", {"error": "unknown path %s" % u.path}
            except (TypeError, ValueError) as e:
                status, body = "400 Bad Request", {"error": str(e)}
            data = json.dumps(body).encode()
            writer.write(("HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
                          "Content-Length: %d\r\nConnection: close\r\n\r\n"
                          % (status, len(data))).encode() + data)
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    # ------------------------------------------------------------------ sessions
    def clamp_expiry(self, v):
        if v == 0:
            return 0
        L = self.L
        return max(L.session_expiry_min, min(v, L.session_expiry_max))

    def attach(self, conn, cid, clean, expiry):
        """Binds conn to the session cid (taking over an older connection); True when a
        session was present."""
        sess = self.sessions.get(cid)
        if sess is not None and sess.conn is not None:
            old = sess.conn
            sess.conn = None
            old.session = None
            if sess.timer is not None:
                sess.timer.cancel()
                sess.timer = None
            sess.redeliver.clear()
            old.violation(0x8E, "session_taken_over", now=True)
        if sess is not None:
            if sess.expire_handle is not None:
                sess.expire_handle.cancel()
                sess.expire_handle = None
            if sess.will_handle is not None:
                sess.will_handle[0].cancel()
                sess.will_handle = None
        present = False
        if sess is not None and clean:
            self.end_session(sess, "session_ended")
            sess = None
        if sess is None:
            sess = Session(cid)
            self.sessions[cid] = sess
        else:
            present = True
        sess.expiry = expiry
        sess.conn = conn
        conn.session = sess
        return present

    def resume_session(self, sess):
        """After CONNACK: resend what is unacknowledged, then the queue."""
        conn = sess.conn
        if sess.inflight:
            now = self.loop.time()
            for pid, out in list(sess.inflight.items()):
                if out.sends >= self.L.redeliver_tries:
                    del sess.inflight[pid]
                    self.tally.drop("redelivery_exhausted", conn.st)
                    continue
                out.sends += 1
                out.next_at = now + self.L.redeliver_period
                sess.redeliver.append((out.next_at, pid, out))
                conn.st.redelivered += 1
                if out.state == 0:
                    conn.send_pub(out, pid, True)
                else:
                    conn.write(bytes((0x62, 2)) + u16(pid))
            self._arm(sess)
        self.pump(sess)

    def expire_session(self, sess):
        sess.expire_handle = None
        if sess.conn is None and self.sessions.get(sess.cid) is sess:
            self.end_session(sess, "session_expired")

    def end_session(self, sess, reason):
        if self.sessions.get(sess.cid) is sess:
            del self.sessions[sess.cid]
        for sub in list(sess.subs.values()):
            self._unsub(sess, sub)
        n = sum(1 for o in sess.queue if o.qos) + len(sess.inflight)
        if n:
            self.tally.drop(reason, None, sess.cid, n)
        sess.queue.clear()
        sess.inflight.clear()
        sess.redeliver.clear()
        if sess.timer is not None:
            sess.timer.cancel()
            sess.timer = None
        if sess.expire_handle is not None:
            sess.expire_handle.cancel()
            sess.expire_handle = None
        if sess.will_handle is not None:
            # the session ends before the Will Delay: the Will goes now
            h, will = sess.will_handle
            sess.will_handle = None
            h.cancel()
            self.publish_will(will, None)

    def publish_will(self, will, sess):
        if sess is not None:
            sess.will_handle = None
        self.tally.wills += 1
        if will.retain:
            self.retain(will)
        self.route(will)

    # ------------------------------------------------------------------ routing
    def retain(self, msg):
        if msg.payload:
            self.retained[msg.topic] = msg
        else:
            self.retained.pop(msg.topic, None)

    def _match(self, topic):
        levels = topic.split("/")
        subs = []
        groups = []
        dollar = topic.startswith("$")
        nl = len(levels)

        def walk(node, i):
            kids = node.kids
            h = kids.get("#")
            if h is not None and not (dollar and i == 0):
                subs.extend(h.subs.values())
                groups.extend(h.groups.values())
            if i == nl:
                subs.extend(node.subs.values())
                groups.extend(node.groups.values())
                return
            c = kids.get(levels[i])
            if c is not None:
                walk(c, i + 1)
            c = kids.get("+")
            if c is not None and not (dollar and i == 0):
                walk(c, i + 1)

        walk(self.root, 0)
        return subs, groups

    def route(self, msg):
        """Delivers msg to every matching subscription; the number of deliveries."""
        m = self.match_cache.get(msg.topic_b)
        if m is None:
            m = self._match(msg.topic)
            if len(self.match_cache) > 100000:
                self.match_cache.clear()
            self.match_cache[msg.topic_b] = m
        subs, groups = m
        n = 0
        pub = msg.publisher
        enqueue = self.enqueue
        for sess, sub in subs:
            if sub.no_local and sess.cid == pub:
                continue
            enqueue(sess, msg, sub, msg.retain and sub.rap)
            n += 1
        for g in groups:
            m2 = g.pick(pub)
            if m2 is not None:
                enqueue(m2[0], msg, m2[1], msg.retain and m2[1].rap)
                n += 1
        return n

    def enqueue(self, sess, msg, sub, retain):
        qos = msg.qos if msg.qos < sub.qos else sub.qos
        conn = sess.conn
        out = Out(msg, qos, 1 if retain else 0, sub.subid)
        if conn is not None and conn.ready and not sess.queue and not conn.wpaused:
            if qos == 0:
                if conn.send_pub(out, 0, False):
                    conn.st.delivered += 1
                return
            if len(sess.inflight) < conn.client_recv_max:
                if len(sess.inflight) >= self.L.queue_limit:
                    self.tally.drop("queue_full", conn.st)
                    return
                self.send_new(sess, conn, out)
                return
        if len(sess.queue) + len(sess.inflight) >= self.L.queue_limit:
            self.tally.drop("queue_full" if qos else "queue_full_qos0",
                            conn.st if conn is not None else None, sess.cid)
            return
        sess.queue.append(out)

    def send_new(self, sess, conn, out):
        pid = sess.alloc_pid()
        if not conn.send_pub(out, pid, False):
            return
        conn.st.delivered += 1
        out.pid = pid
        out.sends = 1
        out.next_at = self.loop.time() + self.L.redeliver_period
        sess.inflight[pid] = out
        sess.redeliver.append((out.next_at, pid, out))
        if sess.timer is None:
            self._arm(sess)

    def pump(self, sess):
        conn = sess.conn
        if conn is None or not conn.ready:
            return
        q = sess.queue
        while q and not conn.wpaused:
            out = q[0]
            if out.qos == 0:
                q.popleft()
                if conn.send_pub(out, 0, False):
                    conn.st.delivered += 1
                continue
            if len(sess.inflight) >= conn.client_recv_max:
                break
            q.popleft()
            self.send_new(sess, conn, out)

    def _arm(self, sess):
        if sess.timer is not None or not sess.redeliver:
            return
        at = max(sess.redeliver[0][0], self.loop.time() + 0.05)
        sess.timer = self.loop.call_at(at, self._redeliver, sess)

    def _redeliver(self, sess):
        sess.timer = None
        conn = sess.conn
        if conn is None or not conn.ready:
            return
        now = self.loop.time()
        dq = sess.redeliver
        L = self.L
        inflight = sess.inflight
        while dq and dq[0][0] <= now:
            t, pid, out = dq.popleft()
            if inflight.get(pid) is not out or out.next_at != t:
                continue
            if out.sends >= L.redeliver_tries:
                del inflight[pid]
                self.tally.drop("redelivery_exhausted", conn.st)
                continue
            out.sends += 1
            out.next_at = now + L.redeliver_period
            dq.append((out.next_at, pid, out))
            conn.st.redelivered += 1
            if out.state == 0:
                conn.send_pub(out, pid, True)
            else:
                conn.write(bytes((0x62, 2)) + u16(pid))
        self._arm(sess)
        self.pump(sess)

    def on_ack(self, conn, t, pid):
        sess = conn.session
        if sess is None:
            return
        out = sess.inflight.get(pid)
        if out is None:
            return
        if t == PUBACK:
            if out.qos != 1:
                return
        elif out.state != 1:  # PUBCOMP before PUBREC
            return
        del sess.inflight[pid]
        conn.st.acked += 1
        if sess.queue:
            self.pump(sess)

    def on_pubrec(self, conn, pid, code):
        sess = conn.session
        out = sess.inflight.get(pid) if sess is not None else None
        if out is None or out.qos != 2:
            if conn.version == 5:
                conn.write(bytes((0x62, 3)) + u16(pid) + b"\x92")
            else:
                conn.write(bytes((0x62, 2)) + u16(pid))
            return
        if code >= 0x80:
            del sess.inflight[pid]
            self.pump(sess)
            return
        out.state = 1
        conn.write(bytes((0x62, 2)) + u16(pid))

    # ------------------------------------------------------------------ subscriptions
    def on_subscribe(self, conn, data, off, end):
        L = self.L
        v5 = conn.version == 5
        pid = (data[off] << 8) | data[off + 1]
        off += 2
        subid = 0
        if v5:
            pl, off = parse_props(data, off, end)
            for k, v in pl:
                if k == P_SUB_ID:
                    if v == 0:
                        return conn.violation(0x82, "sub_id_zero")
                    subid = v
        reqs = []
        while off < end:
            f, off = _rd_str(data, off, end)
            reqs.append((f, data[off]))
            off += 1
        if not reqs:
            return conn.violation(0x82, "empty_subscribe")
        if len(reqs) > L.max_filters:
            return conn.violation(0x98, "too_many_filters")
        sess = conn.session
        codes = []
        retained_out = []
        for fb, opts in reqs:
            try:
                full = fb.decode("utf-8")
            except UnicodeDecodeError:
                return conn.violation(0x81, "malformed_filter")
            qos = opts & 3
            if qos == 3 or opts & 0xC0 or (not v5 and opts & 0xFC) or (opts >> 4) & 3 == 3:
                return conn.violation(0x81, "bad_subscription_options")
            no_local = bool(opts & 4) if v5 else False
            rap = bool(opts & 8) if v5 else False
            rh = (opts >> 4) & 3 if v5 else 0
            gkey = None
            filt = full
            if full.startswith("$share/") or full.startswith("$oshare/"):
                kind, _, rest = full.partition("/")
                gname, sep, filt = rest.partition("/")
                if not gname or not sep or "+" in gname or "#" in gname:
                    codes.append(0x8F if v5 else 0x80)
                    continue
                if no_local:
                    return conn.violation(0x82, "no_local_on_shared")
                gkey = (kind, gname, filt)
            if check_filter(filt, L):
                codes.append(0x8F if v5 else 0x80)
                continue
            existing = sess.subs.get(full)
            if existing is None and len(sess.subs) >= L.max_subs:
                codes.append(0x97 if v5 else 0x80)
                continue
            group = None
            if gkey is not None and existing is None:
                group = self.groups.get(gkey)
                if group is not None and len(group.members) >= L.max_share_members:
                    codes.append(0x97 if v5 else 0x80)
                    continue
            if existing is not None:
                self._unsub(sess, existing)
            if gkey is not None:
                group = self.groups.get(gkey)
                if group is None:
                    group = Group(gkey, gkey[0] == "$oshare")
                    self.groups[gkey] = group
            sub = Sub(full, filt, qos, no_local, rap, rh, subid, group)
            sess.subs[full] = sub
            node = self.root
            for lv in filt.split("/"):
                nxt = node.kids.get(lv)
                if nxt is None:
                    nxt = node.kids[lv] = Node()
                node = nxt
            if group is not None:
                group.members[sess.cid] = (sess, sub)
                group.sticky.clear()
                node.groups[gkey] = group
            else:
                node.subs[sess.cid] = (sess, sub)
                if rh == 0 or (rh == 1 and existing is None):
                    retained_out.append(sub)
            codes.append(qos)
        self.match_cache.clear()
        if v5:
            conn.write(packet(SUBACK, 0, u16(pid) + b"\x00" + bytes(codes)))
        else:
            conn.write(packet(SUBACK, 0, u16(pid) + bytes(codes)))
        for sub in retained_out:
            levels = sub.filter.split("/")
            for topic, msg in list(self.retained.items()):
                if filter_matches(levels, topic):
                    self.enqueue(sess, msg, sub, True)

    def _unsub(self, sess, sub):
        sess.subs.pop(sub.full, None)
        node = self.root
        for lv in sub.filter.split("/"):
            node = node.kids.get(lv)
            if node is None:
                break
        if sub.group is not None:
            g = sub.group
            if g.members.get(sess.cid, (None, None))[1] is sub:
                del g.members[sess.cid]
                g.sticky.clear()
            if not g.members:
                self.groups.pop(g.key, None)
                if node is not None:
                    node.groups.pop(g.key, None)
        elif node is not None:
            e = node.subs.get(sess.cid)
            if e is not None and e[1] is sub:
                del node.subs[sess.cid]
        self.match_cache.clear()

    def on_unsubscribe(self, conn, data, off, end):
        v5 = conn.version == 5
        pid = (data[off] << 8) | data[off + 1]
        off += 2
        if v5:
            _, off = parse_props(data, off, end)
        filters = []
        while off < end:
            f, off = _rd_str(data, off, end)
            filters.append(f)
        if not filters:
            return conn.violation(0x82, "empty_unsubscribe")
        if len(filters) > self.L.max_filters:
            return conn.violation(0x98, "too_many_filters")
        codes = []
        sess = conn.session
        for fb in filters:
            sub = sess.subs.get(fb.decode("utf-8", "replace"))
            if sub is None:
                codes.append(0x11)
            else:
                self._unsub(sess, sub)
                codes.append(0)
        if v5:
            conn.write(packet(UNSUBACK, 0, u16(pid) + b"\x00" + bytes(codes)))
        else:
            conn.write(packet(UNSUBACK, 0, u16(pid)))


# ----------------------------------------------------------------------------------------------
# a raw client for tests (blocking sockets)


class RawClient:
    """A minimal blocking MQTT client for tests: it sends exactly the bytes it is told to and
    reads packets one by one, so a test sees what the broker sent (or that it closed)."""

    def __init__(self, port, version=5, host="127.0.0.1", timeout=5.0):
        self.version = version
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.closed = False

    def send(self, data):
        self.sock.sendall(data)

    def connect(self, client_id, clean=True, keepalive=60, props=None, will=None, **kw):
        """Sends CONNECT and returns the decoded CONNACK (None if the broker closed)."""
        self.send(enc_connect(self.version, client_id, clean, keepalive, props, will, **kw))
        p = self.read(timeout=kw.get("timeout", 5.0))
        return p

    def read(self, timeout=5.0):
        """The next packet, decoded; None when the broker closed the connection; raises
        socket.timeout when nothing came within timeout."""
        deadline = time.monotonic() + timeout
        while True:
            n = frame_len(self.buf)
            if n:
                pkt, self.buf = self.buf[:n], self.buf[n:]
                d = decode(pkt, self.version)
                d["raw"] = pkt
                return d
            if self.closed:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no packet within %ss" % timeout)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
                continue
            self.buf += chunk

    def read_all(self, timeout=1.0, until=None):
        """Packets until the broker closes, nothing comes for timeout seconds, or until(p)."""
        out = []
        while True:
            try:
                p = self.read(timeout)
            except socket.timeout:
                return out
            if p is None:
                return out
            out.append(p)
            if until is not None and until(p):
                return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ----------------------------------------------------------------------------------------------
# the program


def _flag(name):
    return "--" + name.replace("_", "-")


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="An MQTT broker enforcing BifroMQ's per-connection rules (see the module "
                    "docstring for each rule).")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--ws-port", type=int, default=None)
    ap.add_argument("--control-port", type=int, default=None)
    ap.add_argument("--stats-file", default=None)
    ap.add_argument("--stats-times", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    for name, default, typ, help_ in OPTIONS:
        if typ is bool:
            ap.add_argument("--no-" + name.replace("_", "-").replace("use-", ""),
                            dest=name, action="store_false", default=default,
                            help="do not " + help_)
        elif name == "v3_over_limit":
            ap.add_argument(_flag(name), default=default, choices=("drop", "close"), help=help_)
        else:
            ap.add_argument(_flag(name), type=typ, default=default,
                            help="%s (default %s)" % (help_, default))
    a = ap.parse_args(argv)
    limits = {o[0]: getattr(a, o[0]) for o in OPTIONS}
    broker = BifroBroker(a.host, a.port, a.ws_port, a.control_port, a.stats_file,
                         a.stats_times, a.verbose, **limits)

    async def run():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, stop.set)
        await broker.start_async()
        print("%d ws_port=%d control_port=%d" % (broker.port, broker.ws_port or 0,
                                                 broker.control_port or 0), flush=True)
        await stop.wait()
        await broker.stop_async()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
