"""dnsserver: a small DNS server of ours for the integration tests (issue 13). Standard library
only (threads); UDP and TCP on the same address and port.

    dns = DnsServer(test=t).start()              # 127.0.0.1, a free port (dns.port); t's
                                                 # cleanup stops it (else call dns.stop())
    dns = DnsServer("127.53.0.7", 53).start()    # what a private resolv.conf can name (netns.py)
    dns.set("broker.test", a=["127.0.0.1"])      # answer A (and AAAA with aaaa=[...])
    dns.set("broker.test", a=["127.0.0.2"])      # the address changes (next lookup sees it)
    dns.nxdomain("gone.test")                    # rcode 3: the name does not exist
    dns.servfail("broken.test")                  # rcode 2
    dns.refused("shut.test")                     # rcode 5
    dns.drop("hang.test")                        # read the query, never answer (UDP and TCP)
    dns.delay("slow.test", 3.0, a=["127.0.0.1"]) # answer after 3 s
    dns.remove("broker.test")                    # back to the default
    dns.default = "nxdomain"                     # names not in the table: nxdomain (the default),
                                                 # servfail, refused, drop
    dns.truncate_udp = True                      # UDP answers carry TC=1 and no records: the
                                                 # client must ask again over TCP
    dns.queries("broker.test")                   # how many queries for the name (any type)
    dns.queries("broker.test", "AAAA")           # ... of one type
    dns.log                                      # [(t, "udp"|"tcp", name, qtype, outcome)]
    dns.wait_queries("hang.test", 2, timeout=10) # bounded wait until the count reaches 2
    dns.stop()

Names are matched without case and without the final dot. A name in the table but without
records of the type asked gets NOERROR with no answer (NODATA), as real servers do. Answers
are authoritative, with the TTL given to set() (0 by default: nothing should cache them).

Run as a script it serves a table from the command line, for trying a resolver by hand:
    python3 dnsserver.py --addr 127.53.0.1 --port 53 broker.test=127.0.0.1 gone.test=nxdomain
"""

import socket
import struct
import threading
import time

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28,
         "SRV": 33, "OPT": 41, "ANY": 255}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
RCODES = {"noerror": 0, "formerr": 1, "servfail": 2, "nxdomain": 3, "notimp": 4, "refused": 5}
MODES = ("answer", "nxdomain", "servfail", "refused", "drop")


class DnsError(Exception):
    pass


def _norm(name):
    return name.rstrip(".").lower()


def parse_query(msg):
    """(id, flags, qname, qtype, qclass, end of the question) of a DNS query. Raises DnsError on
    a message that is not a query with one question."""
    if len(msg) < 12:
        raise DnsError("short header")
    qid, flags, qd, _an, _ns, _ar = struct.unpack("!HHHHHH", msg[:12])
    if flags & 0x8000:
        raise DnsError("a response, not a query")
    if qd != 1:
        raise DnsError("%d questions" % qd)
    labels = []
    off = 12
    while True:
        if off >= len(msg):
            raise DnsError("name runs past the end")
        n = msg[off]
        off += 1
        if n == 0:
            break
        if n & 0xC0:
            raise DnsError("compression in a question")
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n
    if off + 4 > len(msg):
        raise DnsError("no type/class")
    qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
    return qid, flags, ".".join(labels), qtype, qclass, off + 4


def encode_name(name):
    out = b""
    for label in _norm(name).split("."):
        if label:
            b = label.encode("ascii")
            out += bytes([len(b)]) + b
    return out + b"\0"


def build_response(query, rcode=0, answers=(), truncated=False):
    """The response to query (bytes): its question echoed, answers a list of (qtype, rdata bytes,
    ttl) for the question's name."""
    qid, flags, _name, _qtype, _qclass, qend = parse_query(query)
    opcode = flags & 0x7800
    rd = flags & 0x0100
    rflags = 0x8000 | opcode | 0x0400 | rd | 0x0080 | (rcode & 0xF)  # QR, AA, RD, RA
    if truncated:
        rflags |= 0x0200
        answers = ()
    head = struct.pack("!HHHHHH", qid, rflags, 1, len(answers), 0, 0)
    body = query[12:qend]
    for qtype, rdata, ttl in answers:
        body += struct.pack("!HHHIH", 0xC00C, qtype, 1, ttl, len(rdata)) + rdata
    return head + body


class Entry:
    def __init__(self, mode, a=(), aaaa=(), ttl=0, delay=0.0):
        if mode not in MODES:
            raise ValueError("mode %r not in %s" % (mode, MODES))
        self.mode = mode
        self.a = [socket.inet_pton(socket.AF_INET, x) for x in a]
        self.aaaa = [socket.inet_pton(socket.AF_INET6, x) for x in aaaa]
        self.ttl = ttl
        self.delay = delay


class DnsServer:
    """test: a relaytest.Test whose cleanup stops the server (or None: call stop())."""

    def __init__(self, addr="127.0.0.1", port=0, log=None, test=None):
        self.addr = addr
        self._log = log
        self.lock = threading.Lock()
        self.table = {}
        self.default = "nxdomain"
        self.truncate_udp = False
        self.log = []
        self.counts = {}
        self.stopping = threading.Event()
        self.tcp_conns = []
        # UDP and TCP on one port: with port 0 take the kernel's UDP port and try it for TCP
        for _ in range(50):
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                u.bind((addr, port))
                t.bind((addr, u.getsockname()[1]))
            except OSError:
                u.close()
                t.close()
                if port:
                    raise
                continue
            break
        else:
            raise OSError("no UDP+TCP port free on %s" % addr)
        t.listen(16)
        self.udp, self.tcp = u, t
        self.port = u.getsockname()[1]
        if test is not None:
            test._register(self)

    def __repr__(self):
        return "DnsServer(%s:%d)" % (self.addr, self.port)

    # ------------------------------------------------------------------ the table
    def set(self, name, a=(), aaaa=(), ttl=0):
        """Answers name with these addresses (replaces whatever name had)."""
        self._put(name, Entry("answer", a, aaaa, ttl))

    def delay(self, name, seconds, a=(), aaaa=(), ttl=0):
        """Answers name like set(), seconds after the query came."""
        self._put(name, Entry("answer", a, aaaa, ttl, seconds))

    def nxdomain(self, name):
        self._put(name, Entry("nxdomain"))

    def servfail(self, name):
        self._put(name, Entry("servfail"))

    def refused(self, name):
        self._put(name, Entry("refused"))

    def drop(self, name):
        """Queries for name are read and never answered."""
        self._put(name, Entry("drop"))

    def remove(self, name):
        with self.lock:
            self.table.pop(_norm(name), None)

    def _put(self, name, entry):
        with self.lock:
            self.table[_norm(name)] = entry
        self.say("%s -> %s%s" % (name, entry.mode, (" " + ",".join(
            socket.inet_ntop(socket.AF_INET, x) for x in entry.a) +
            " " + ",".join(socket.inet_ntop(socket.AF_INET6, x) for x in entry.aaaa))
            if entry.mode == "answer" else ""))

    # ------------------------------------------------------------------ what it saw
    def queries(self, name=None, qtype=None):
        """Queries received for name (all names if None), of qtype ("A", "AAAA", ...) or any."""
        with self.lock:
            return sum(n for (nm, ty), n in self.counts.items()
                       if (name is None or nm == _norm(name)) and
                       (qtype is None or ty == qtype))

    def wait_queries(self, name, n, timeout, qtype=None):
        deadline = time.monotonic() + timeout
        while self.queries(name, qtype) < n:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def reset_counts(self):
        with self.lock:
            self.counts = {}
            self.log = []

    def say(self, text):
        if self._log:
            self._log("dns %s:%d: %s" % (self.addr, self.port, text))

    # ------------------------------------------------------------------ serving
    def start(self):
        threading.Thread(target=self._udp_loop, daemon=True, name="dns-udp").start()
        threading.Thread(target=self._tcp_accept, daemon=True, name="dns-tcp").start()
        return self

    def stop(self):
        self.stopping.set()
        for s in [self.udp, self.tcp] + list(self.tcp_conns):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def _answer(self, query, proto):
        """(response bytes or None to stay silent, delay in seconds)."""
        try:
            _qid, flags, name, qtype, _qclass, _end = parse_query(query)
        except DnsError as e:
            self.say("bad query (%s)" % e)
            return None, 0
        key = _norm(name)
        tname = TYPE_NAMES.get(qtype, str(qtype))
        with self.lock:
            entry = self.table.get(key)
            mode = entry.mode if entry else self.default
            self.counts[(key, tname)] = self.counts.get((key, tname), 0) + 1
            self.log.append((time.monotonic(), proto, key, tname, mode))
        if (flags >> 11) & 0xF:
            return build_response(query, RCODES["notimp"]), 0
        if mode == "drop":
            return None, 0
        if mode != "answer":
            return build_response(query, RCODES[mode]), 0
        if proto == "udp" and self.truncate_udp:
            return build_response(query, 0, truncated=True), entry.delay
        answers = []
        if qtype in (TYPES["A"], TYPES["ANY"]):
            answers += [(TYPES["A"], x, entry.ttl) for x in entry.a]
        if qtype in (TYPES["AAAA"], TYPES["ANY"]):
            answers += [(TYPES["AAAA"], x, entry.ttl) for x in entry.aaaa]
        return build_response(query, 0, answers), entry.delay

    def _later(self, delay, fn):
        if delay > 0:
            tm = threading.Timer(delay, fn)
            tm.daemon = True
            tm.start()
        else:
            fn()

    def _udp_loop(self):
        while not self.stopping.is_set():
            try:
                query, peer = self.udp.recvfrom(65535)
            except OSError:
                return
            resp, delay = self._answer(query, "udp")
            if resp is None:
                continue

            def send(resp=resp, peer=peer):
                try:
                    self.udp.sendto(resp, peer)
                except OSError:
                    pass
            self._later(delay, send)

    def _tcp_accept(self):
        while not self.stopping.is_set():
            try:
                s, _ = self.tcp.accept()
            except OSError:
                return
            self.tcp_conns.append(s)
            threading.Thread(target=self._tcp_conn, args=(s,), daemon=True,
                             name="dns-tcp-conn").start()

    def _tcp_conn(self, s):
        buf = b""
        wlock = threading.Lock()
        try:
            while not self.stopping.is_set():
                data = s.recv(65536)
                if not data:
                    return
                buf += data
                while len(buf) >= 2:
                    n = struct.unpack("!H", buf[:2])[0]
                    if len(buf) < 2 + n:
                        break
                    query, buf = buf[2:2 + n], buf[2 + n:]
                    resp, delay = self._answer(query, "tcp")
                    if resp is None:
                        continue  # keep the connection open, answer nothing

                    def send(resp=resp):
                        with wlock:
                            try:
                                s.sendall(struct.pack("!H", len(resp)) + resp)
                            except OSError:
                                pass
                    self._later(delay, send)
        except OSError:
            return
        finally:
            try:
                self.tcp_conns.remove(s)
            except ValueError:
                pass
            try:
                s.close()
            except OSError:
                pass


def main():
    import argparse

    ap = argparse.ArgumentParser(description="a DNS server of ours (UDP and TCP)")
    ap.add_argument("--addr", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--default", default="nxdomain", choices=MODES[1:])
    ap.add_argument("entries", nargs="*",
                    help="NAME=ADDR[,ADDR...] (IPv4 and IPv6 mixed) or NAME=nxdomain|servfail|"
                         "refused|drop")
    args = ap.parse_args()
    dns = DnsServer(args.addr, args.port, log=lambda s: print(s, flush=True))
    dns.default = args.default
    for e in args.entries:
        name, _, val = e.partition("=")
        if val in MODES[1:]:
            getattr(dns, val)(name)
        else:
            addrs = val.split(",")
            dns.set(name, a=[x for x in addrs if ":" not in x],
                    aaaa=[x for x in addrs if ":" in x])
    dns.start()
    print("serving DNS on %s:%d (udp and tcp); Ctrl-C stops" % (dns.addr, dns.port), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        dns.stop()


if __name__ == "__main__":
    main()
