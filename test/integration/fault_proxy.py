"""fault_proxy: a TCP proxy between the relay and a real broker that injects network faults on
command, and records the MQTT packets that cross it. Standard library only (threads).

    proxy = FaultProxy(upstream_port).start()    # the relay connects to proxy.url
    proxy.stall_writes(True)   # what the relay writes stops reaching the broker
    proxy.stall_reads(True)    # what the broker writes stops reaching the relay
    proxy.resume()             # both flow again (what was held is delivered, in order)
    proxy.cut()                # closes both sides of every live connection
    proxy.refuse(True)         # new connections are closed at once (the link stays down)
    proxy.delay(0.2)           # every chunk is delivered 0.2 s after it was read
    proxy.byte_at_a_time(True) # one byte per write, in both directions
    proxy.cut_after("PUBREC", "down", n=1)   # cut right after delivering the next PUBREC

Directions: "up" is relay -> broker, "down" is broker -> relay. Stalling a direction stops
reading its source once a little is queued, so the writer sees TCP backpressure, as with a
stalled network; nothing is dropped by the proxy except by cut().

Each connection (Link) records the packets it carried at two stages, "read" (from their
sender) and "delivered" (written to their receiver): sent() is what the relay wrote (read from
it, whether or not a cut let it through), received() what was delivered to the relay. Packets
are decoded with hostile_broker's MQTT reader (PUBLISH: dup, qos, pid, topic, payload; acks:
pid, code). Whole packets are delivered one write each (outside byte_at_a_time), so a
cut_after() cuts exactly after the packet named.
"""

import collections
import socket
import threading
import time

import hostile_broker as hbm

QUEUE_LIMIT = 64 * 1024  # bytes read ahead per direction while stalled or delayed


class Link:
    """One relay connection through the proxy and its upstream connection."""

    def __init__(self, proxy, index, down_sock, up_sock):
        self.proxy = proxy
        self.index = index
        self.relay_sock = down_sock     # the relay's side
        self.broker_sock = up_sock      # the broker's side
        self.t_open = time.monotonic()
        self.t_close = None
        self.closed_by = None           # "relay", "broker", "cut", "refused"
        self.version = hbm.V311
        self.packets = []               # (t, direction, stage, info)
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.queues = {"up": collections.deque(), "down": collections.deque()}
        self.queued = {"up": 0, "down": 0}
        self.eof = {"up": False, "down": False}
        self.alive = True
        self.streams = {(d, st): hbm.Stream() for d in ("up", "down")
                        for st in ("read", "delivered")}
        self.carry = {"up": b"", "down": b""}  # a partial packet waiting for its end

    @property
    def open(self):
        return self.t_close is None

    def record(self, direction, stage, data, observe=True):
        """Decodes the whole packets data completes and appends them. observe=False leaves the
        cut_after() triggers to a later observe() (the writer records a packet before writing
        it, so that its record comes before anything the receiver says in reply)."""
        infos = []
        for raw in self.streams[(direction, stage)].feed(data):
            try:
                info = hbm.decode(raw, self.version)
            except Exception as e:  # noqa: BLE001 - a record, not a check
                info = {"type": hbm.TYPE_NAMES.get(raw[0] >> 4, "?"), "error": str(e)}
            if info["type"] == "CONNECT":
                self.version = info.get("version", hbm.V311)
            self.packets.append((time.monotonic(), direction, stage, info))
            infos.append(info)
        if observe:
            self.observe(direction, stage, infos)
        return infos

    def observe(self, direction, stage, infos):
        for info in infos:
            self.proxy._observe(self, direction, stage, info)

    def _select(self, direction, stage, type_):
        return [i for _, d, st, i in list(self.packets) if d == direction and st == stage
                and (type_ is None or i["type"] == type_)]

    def sent(self, type_=None):
        """Packets the relay sent on this link (read from it, delivered or not)."""
        return self._select("up", "read", type_)

    def delivered_up(self, type_=None):
        """Packets from the relay that reached the broker."""
        return self._select("up", "delivered", type_)

    def received(self, type_=None):
        """Packets delivered to the relay on this link."""
        return self._select("down", "delivered", type_)

    def __repr__(self):
        return "Link#%d(%d packets, closed_by=%s)" % (self.index, len(self.packets),
                                                      self.closed_by)


class FaultProxy:
    def __init__(self, upstream_port, upstream_host="127.0.0.1", port=0, name="proxy",
                 log=None):
        self.upstream = (upstream_host, upstream_port)
        self.name = name
        self._log = log
        self.lock = threading.Lock()
        self.links = []
        self.stalled = {"up": False, "down": False}
        self.delay_s = 0.0
        self.one_byte = False
        self.refusing = False
        self.triggers = []          # [type, direction, stage, remaining count, match]
        self.stopping = threading.Event()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]

    @property
    def url(self):
        return "mqtt://127.0.0.1:%d" % self.port

    def log(self, text):
        if self._log:
            self._log("%s: %s" % (self.name, text))

    # ------------------------------------------------------------------ control
    def start(self):
        threading.Thread(target=self._accept, daemon=True, name="fp-" + self.name).start()
        return self

    def stop(self):
        self.stopping.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        for ln in self.snapshot():
            self._close(ln, "cut")

    def stall_writes(self, on=True):
        """What the relay writes stops reaching the broker (direction up)."""
        self._set_stall("up", on)

    def stall_reads(self, on=True):
        """What the broker writes stops reaching the relay (direction down)."""
        self._set_stall("down", on)

    def resume(self):
        self._set_stall("up", False)
        self._set_stall("down", False)

    def delay(self, seconds):
        self.delay_s = float(seconds)
        self.log("delay %.3fs" % self.delay_s)
        self._wake()

    def byte_at_a_time(self, on=True):
        self.one_byte = bool(on)
        self.log("one byte at a time: %s" % on)

    def refuse(self, on=True):
        self.refusing = bool(on)
        self.log("refusing new connections: %s" % on)

    def cut(self, rst=False):
        """Closes both sides of every live link (rst: with a TCP reset). Returns how many."""
        n = 0
        for ln in self.snapshot():
            if ln.open:
                self._close(ln, "cut", rst)
                n += 1
        self.log("cut %d link(s)" % n)
        return n

    def cut_after(self, type_, direction, stage="delivered", n=1, match=None):
        """Cuts the link right after the n-th next packet of type_ in direction reached stage:
        "read" (read from its sender, not delivered: lost with the link) or "delivered" (written
        to its receiver, nothing after it is). match(info) narrows the packets counted."""
        with self.lock:
            self.triggers.append([type_, direction, stage, n, match])

    def pending_triggers(self):
        with self.lock:
            return [t for t in self.triggers if t[3] > 0]

    # ------------------------------------------------------------------ queries
    def snapshot(self):
        with self.lock:
            return list(self.links)

    def live(self):
        for ln in reversed(self.snapshot()):
            if ln.open:
                return ln
        return None

    # ------------------------------------------------------------------ internals
    def _set_stall(self, direction, on):
        self.stalled[direction] = bool(on)
        self.log("stall %s: %s" % (direction, on))
        self._wake()

    def _wake(self):
        for ln in self.snapshot():
            with ln.cond:
                ln.cond.notify_all()

    def _observe(self, ln, direction, stage, info):
        fire = False
        with self.lock:
            for tr in self.triggers:
                if tr[3] > 0 and tr[0] == info["type"] and tr[1] == direction \
                        and tr[2] == stage and (tr[4] is None or tr[4](info)):
                    tr[3] -= 1
                    if tr[3] == 0:
                        fire = True
        if fire:
            self.log("link %d: cut after %s %s %s (pid %s)" % (ln.index, direction, stage,
                                                              info["type"], info.get("pid")))
            self._close(ln, "cut")

    def _accept(self):
        while not self.stopping.is_set():
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            if self.refusing:
                with self.lock:
                    ln = Link(self, len(self.links), s, None)
                    ln.t_close = time.monotonic()
                    ln.closed_by = "refused"
                    self.links.append(ln)
                try:
                    s.close()
                except OSError:
                    pass
                continue
            try:
                up = socket.create_connection(self.upstream, timeout=5)
                up.settimeout(None)
            except OSError as e:
                self.log("upstream connect failed: %s" % e)
                s.close()
                continue
            for x in (s, up):
                x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                ln = Link(self, len(self.links), s, up)
                self.links.append(ln)
            for direction, src, dst in (("up", s, up), ("down", up, s)):
                threading.Thread(target=self._reader, args=(ln, direction, src), daemon=True,
                                 name="fp-%s-%d-%s-r" % (self.name, ln.index, direction)).start()
                threading.Thread(target=self._writer, args=(ln, direction, dst), daemon=True,
                                 name="fp-%s-%d-%s-w" % (self.name, ln.index, direction)).start()

    def _close(self, ln, by, rst=False):
        with ln.cond:
            if ln.t_close is not None:
                return
            ln.t_close = time.monotonic()
            ln.closed_by = by
            ln.alive = False
            ln.cond.notify_all()
        for s in (ln.relay_sock, ln.broker_sock):
            if s is None:
                continue
            try:
                if rst:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 b"\x01\x00\x00\x00\x00\x00\x00\x00")
                else:
                    s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def _reader(self, ln, direction, src):
        while True:
            with ln.cond:
                while ln.alive and (self.stalled[direction] or
                                    ln.queued[direction] >= QUEUE_LIMIT):
                    ln.cond.wait(0.1)
                if not ln.alive:
                    return
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                with ln.cond:
                    ln.eof[direction] = True
                    ln.cond.notify_all()
                # the writer closes the link once what was read is delivered
                return
            ln.record(direction, "read", data)
            if not ln.alive:
                return
            with ln.cond:
                ln.queues[direction].append((time.monotonic(), data))
                ln.queued[direction] += len(data)
                ln.cond.notify_all()

    def _writer(self, ln, direction, dst):
        while True:
            with ln.cond:
                while ln.alive and (not ln.queues[direction] or self.stalled[direction]) \
                        and not (ln.eof[direction] and not ln.queues[direction]):
                    ln.cond.wait(0.1)
                if not ln.alive:
                    return
                if ln.eof[direction] and not ln.queues[direction]:
                    eof = True
                else:
                    eof = False
                    t_read, data = ln.queues[direction][0]
            if eof:
                self._close(ln, "relay" if direction == "up" else "broker")
                return
            wait = t_read + self.delay_s - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, 0.05))
                continue
            with ln.cond:
                if not ln.queues[direction] or self.stalled[direction]:
                    continue
                ln.queues[direction].popleft()
            try:
                if self.one_byte:
                    for i in range(len(data)):
                        if not ln.alive:
                            return
                        infos = ln.record(direction, "delivered", data[i:i + 1], False)
                        dst.sendall(data[i:i + 1])
                        ln.observe(direction, "delivered", infos)
                        time.sleep(0.0005)
                else:
                    # whole packets, one write each, so that a cut after a packet is exact
                    buf = ln.carry[direction] + data
                    off = 0
                    while True:
                        n = hbm.frame_check(buf[off:])
                        if not n:
                            break
                        if not ln.alive:
                            return
                        infos = ln.record(direction, "delivered", buf[off:off + n], False)
                        dst.sendall(buf[off:off + n])
                        ln.observe(direction, "delivered", infos)
                        off += n
                    ln.carry[direction] = buf[off:]
            except (OSError, hbm.WireError):
                self._close(ln, "broker" if direction == "up" else "relay")
                return
            with ln.cond:
                ln.queued[direction] -= len(data)
                ln.cond.notify_all()
