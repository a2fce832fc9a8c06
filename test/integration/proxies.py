"""proxies: an HTTP CONNECT proxy and a SOCKS5 proxy of ours, for the proxy tests of issue 13.
Standard library only (threads); they listen on 127.0.0.1, a free port.

    hp = HttpConnectProxy(t, auth=("user", "pass")).start()  # t: a relaytest.Test (stopped by
                                                             # its cleanup) or None
    hp.url                         # "http://127.0.0.1:PORT" (hp.url_with_auth() adds user:pass@)
    sp = Socks5Proxy(t, auth=("user", "pass")).start()       # auth=None: no-auth method only
    sp.url                         # "socks5://127.0.0.1:PORT"

    hp.hosts["broker.test"] = "127.0.0.1"   # names only the proxy can resolve (proves that the
                                            # client sent the name, not an address)
    hp.refuse_with(403)            # the next CONNECTs are answered 403 (407 and 502 too; None:
                                   # back to normal). Without auth=... nothing is asked.
    sp.refuse_with(0x02)           # SOCKS5 reply code (0x02 not allowed, 0x05 refused, ...)

    hp.requests                    # every CONNECT seen: Request(target, host, port, auth,
                                   # headers, status) -- auth is (user, pass) or None
    sp.requests                    # Request(target, host, port, auth, atyp, status): atyp
                                   # "ipv4" | "domain" | "ipv6", status the reply code
    hp.connections, hp.tunnels     # accepted, spliced (status 200 / reply 0)
    hp.bytes_up, hp.bytes_down     # bytes carried client -> target, target -> client
    hp.first_bytes(i, "up", 64)    # the first bytes of tunnel i in a direction (a TLS record
                                   # header, or MQTT in clear)
    hp.cut()                       # closes every open tunnel

Once the proxy protocol's handshake is done the proxy only copies bytes, so TLS runs end to end
through it. A connection to the target that fails is answered 502 (HTTP) or 0x05 (SOCKS5).
Bytes the client sent right after its request (before the answer) are forwarded too.
"""

import base64
import collections
import socket
import struct
import threading

Request = collections.namedtuple("Request", "target host port auth extra status")

HTTP_REASONS = {200: "Connection established", 400: "Bad Request", 403: "Forbidden",
                405: "Method Not Allowed", 407: "Proxy Authentication Required",
                502: "Bad Gateway", 503: "Service Unavailable"}


def _close(s):
    if s is None:
        return
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


def _recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise EOFError("closed after %d of %d bytes" % (len(buf), n))
        buf += d
    return buf


class Tunnel:
    def __init__(self, client, upstream, request):
        self.client = client
        self.upstream = upstream
        self.request = request
        self.bytes = {"up": 0, "down": 0}
        self.head = {"up": b"", "down": b""}
        self.open = True


class _Proxy:
    """What both proxies share: accept loop, upstream connect, splice, counters."""

    scheme = None
    HEAD_KEEP = 4096

    def __init__(self, t=None, auth=None, port=0, name=None, log=None):
        self.t = t
        self.auth = auth
        self.name = name or self.scheme
        self._log = log
        self.lock = threading.Lock()
        self.hosts = {}
        self.refusal = None
        self.requests = []
        self.tunnels_list = []
        self.connections = 0
        self.stopping = threading.Event()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port))
        self.lsock.listen(32)
        self.port = self.lsock.getsockname()[1]
        self.socks = set()
        if t is not None:
            t._register(self)

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % (self.scheme, self.port)

    def url_with_auth(self, user=None, password=None):
        u, p = (user, password) if user is not None else self.auth
        return "%s://%s:%s@127.0.0.1:%d" % (self.scheme, u, p, self.port)

    @property
    def tunnels(self):
        return len(self.tunnels_list)

    @property
    def bytes_up(self):
        return sum(tn.bytes["up"] for tn in list(self.tunnels_list))

    @property
    def bytes_down(self):
        return sum(tn.bytes["down"] for tn in list(self.tunnels_list))

    def first_bytes(self, i, direction, n=64):
        return self.tunnels_list[i].head[direction][:n]

    def refuse_with(self, code):
        self.refusal = code
        self.say("refusing with %s" % code)

    def say(self, text):
        if self._log:
            self._log("%s proxy :%d: %s" % (self.name, self.port, text))

    def start(self):
        threading.Thread(target=self._accept, daemon=True, name=self.name + "-accept").start()
        return self

    def stop(self):
        self.stopping.set()
        _close(self.lsock)
        self.cut()

    def cut(self):
        """Closes every open connection (client and upstream sides). Returns how many."""
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            _close(s)
        return len(socks)

    def _track(self, s):
        with self.lock:
            self.socks.add(s)

    def _untrack(self, s):
        with self.lock:
            self.socks.discard(s)
        _close(s)

    def _accept(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            self._track(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True,
                             name=self.name + "-conn").start()

    def _serve(self, c):
        r = None
        try:
            r = self.handshake(c)  # None, or (upstream socket, Request, early bytes)
        except (OSError, EOFError, ValueError) as e:
            self.say("handshake: %s" % e)
        if r is None:
            self._untrack(c)
            return
        self._splice(c, *r)

    def _connect(self, host, port):
        """A connected socket to host:port (names from self.hosts first), or None."""
        addr = self.hosts.get(host.lower(), host)
        try:
            up = socket.create_connection((addr, port), timeout=5)
            up.settimeout(None)
            up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as e:
            self.say("connect %s:%d: %s" % (host, port, e))
            return None
        self._track(up)
        return up

    def _record(self, req):
        with self.lock:
            self.requests.append(req)
        self.say("%s -> %s" % (req.target, req.status))

    def _splice(self, c, up, req, early=b""):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tn = Tunnel(c, up, req)
        with self.lock:
            self.tunnels_list.append(tn)
        ended = []
        try:
            if early:
                self._count(tn, "up", early)
                up.sendall(early)
        except OSError:
            pass

        def pump(src, dst, direction):
            try:
                while True:
                    d = src.recv(65536)
                    if not d:
                        break
                    self._count(tn, direction, d)
                    dst.sendall(d)
            except OSError:
                pass
            # pass the half-close on; the other pump ends when its side closes
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            with self.lock:
                ended.append(direction)
                last = len(ended) == 2
            if last:
                tn.open = False
                self._untrack(c)
                self._untrack(up)

        threading.Thread(target=pump, args=(up, c, "down"), daemon=True,
                         name=self.name + "-down").start()
        pump(c, up, "up")

    def _count(self, tn, direction, d):
        with self.lock:
            tn.bytes[direction] += len(d)
            if len(tn.head[direction]) < self.HEAD_KEEP:
                tn.head[direction] += d[:self.HEAD_KEEP - len(tn.head[direction])]


class HttpConnectProxy(_Proxy):
    """HTTP/1.1 CONNECT (RFC 9110 section 9.3.6) with optional Basic proxy authentication."""

    scheme = "http"

    def handshake(self, c):
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = c.recv(4096)
            if not d:
                raise EOFError("closed before the end of the request")
            buf += d
            if len(buf) > 16384:
                self._answer(c, 400)
                return None
        head, _, early = buf.partition(b"\r\n\r\n")
        lines = head.decode("iso-8859-1").split("\r\n")
        parts = lines[0].split(" ")
        headers = collections.OrderedDict()
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        target = parts[1] if len(parts) == 3 else ""
        host, port = _split_hostport(target)
        auth = None
        pa = headers.get("proxy-authorization")
        if pa:
            scheme, _, cred = pa.partition(" ")
            if scheme.lower() == "basic":
                try:
                    u, _, p = base64.b64decode(cred.strip()).decode("utf-8").partition(":")
                    auth = (u, p)
                except (ValueError, UnicodeDecodeError):
                    auth = ("?", "?")
            else:
                auth = (scheme, cred)

        def answer(status):
            self._record(Request(target, host, port, auth, headers, status))
            self._answer(c, status)
            return None

        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return answer(400)
        if parts[0] != "CONNECT":
            return answer(405)
        if host is None:
            return answer(400)
        if self.auth is not None and auth != tuple(self.auth):
            return answer(407)
        if self.refusal is not None:
            return answer(self.refusal)
        up = self._connect(host, port)
        if up is None:
            return answer(502)
        req = Request(target, host, port, auth, headers, 200)
        self._record(req)
        self._answer(c, 200)
        return up, req, early

    def _answer(self, c, status):
        extra = ""
        if status == 407:
            extra = 'Proxy-Authenticate: Basic realm="relaytest"\r\n'
        if status != 200:
            extra += "Content-Length: 0\r\nConnection: close\r\n"
        c.sendall(("HTTP/1.1 %d %s\r\n%s\r\n" % (status, HTTP_REASONS.get(status, "Error"),
                                                extra)).encode())


def _split_hostport(target):
    """("host", port) of "host:port" or "[v6]:port"; (None, None) when malformed."""
    try:
        if target.startswith("["):
            h, _, rest = target[1:].partition("]")
            return h, int(rest.lstrip(":"))
        h, _, p = target.rpartition(":")
        if not h:
            return None, None
        return h, int(p)
    except ValueError:
        return None, None


class Socks5Proxy(_Proxy):
    """SOCKS5 (RFC 1928) CONNECT with no authentication, or username/password (RFC 1929)
    when auth=(user, password) is given. Address types IPv4, domain name and IPv6."""

    scheme = "socks5"
    ATYPS = {1: "ipv4", 3: "domain", 4: "ipv6"}

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.methods_seen = []  # the method list of each greeting

    def handshake(self, c):
        ver, n = _recv_exact(c, 2)
        if ver != 5:
            raise ValueError("not SOCKS5 (version %d)" % ver)
        methods = list(_recv_exact(c, n))
        with self.lock:
            self.methods_seen.append(methods)
        want = 0x02 if self.auth is not None else 0x00
        if want not in methods:
            c.sendall(b"\x05\xff")
            self._record(Request("", None, None, None, {"methods": methods}, "no method"))
            return None
        c.sendall(bytes([5, want]))
        auth = None
        if want == 0x02:
            ver = _recv_exact(c, 1)[0]
            ulen = _recv_exact(c, 1)[0]
            user = _recv_exact(c, ulen).decode("utf-8", "replace")
            plen = _recv_exact(c, 1)[0]
            pw = _recv_exact(c, plen).decode("utf-8", "replace")
            auth = (user, pw)
            if ver != 1 or auth != tuple(self.auth):
                c.sendall(b"\x01\x01")
                self._record(Request("", None, None, auth, {"methods": methods}, "auth failed"))
                return None
            c.sendall(b"\x01\x00")
        ver, cmd, _rsv, atyp = _recv_exact(c, 4)
        if atyp == 1:
            host = socket.inet_ntop(socket.AF_INET, _recv_exact(c, 4))
        elif atyp == 4:
            host = socket.inet_ntop(socket.AF_INET6, _recv_exact(c, 16))
        elif atyp == 3:
            host = _recv_exact(c, _recv_exact(c, 1)[0]).decode("utf-8", "replace")
        else:
            self._reply(c, 0x08)
            return None
        port = struct.unpack("!H", _recv_exact(c, 2))[0]
        target = ("[%s]:%d" if atyp == 4 else "%s:%d") % (host, port)
        extra = {"methods": methods, "atyp": self.ATYPS[atyp], "cmd": cmd}

        def reply(code):
            self._record(Request(target, host, port, auth, extra, code))
            self._reply(c, code)
            return None

        if cmd != 1:
            return reply(0x07)  # command not supported
        if self.refusal is not None:
            return reply(self.refusal)
        up = self._connect(host, port)
        if up is None:
            return reply(0x05)
        req = Request(target, host, port, auth, extra, 0)
        self._record(req)
        bound = up.getsockname()
        c.sendall(b"\x05\x00\x00\x01" + socket.inet_aton(bound[0]) + struct.pack("!H", bound[1]))
        return up, req, b""

    def _reply(self, c, code):
        c.sendall(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))


# ----------------------------------------------------------------------------------------------
# client side, for tests that talk through the proxies themselves (paho cannot)


def http_connect(proxy_port, host, port, auth=None, timeout=10):
    """A socket tunnelled through an HTTP CONNECT proxy on 127.0.0.1:proxy_port to host:port.
    Returns (socket, status); the socket is None unless status is 200."""
    s = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout)
    target = "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
    req = "CONNECT %s HTTP/1.1\r\nHost: %s\r\n" % (target, target)
    if auth:
        req += "Proxy-Authorization: Basic %s\r\n" % base64.b64encode(
            ("%s:%s" % auth).encode()).decode()
    s.sendall((req + "\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(1)  # byte by byte: nothing of the tunnel is read here
        if not d:
            break
        buf += d
    try:
        status = int(buf.split(b" ", 2)[1])
    except (IndexError, ValueError):
        status = None
    if status != 200:
        s.close()
        return None, status
    return s, status


def socks5_connect(proxy_port, host, port, auth=None, timeout=10, resolve_locally=False):
    """A socket through a SOCKS5 proxy on 127.0.0.1:proxy_port to host:port. host is sent as
    an address when it is one (IPv4 / IPv6), else as a domain name (resolve_locally: as the
    address it resolves to here). Returns (socket, reply code); socket None unless code 0.
    A refused method or authentication gives code "no method" / "auth failed"."""
    s = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout)
    s.sendall(b"\x05\x01" + (b"\x02" if auth else b"\x00"))
    ver, method = _recv_exact(s, 2)
    if method == 0xFF:
        s.close()
        return None, "no method"
    if method == 0x02:
        u, p = (x.encode() for x in auth)
        s.sendall(b"\x01" + bytes([len(u)]) + u + bytes([len(p)]) + p)
        if _recv_exact(s, 2)[1] != 0:
            s.close()
            return None, "auth failed"
    if resolve_locally:
        host = socket.getaddrinfo(host, port, socket.AF_INET)[0][4][0]
    try:
        addr = b"\x01" + socket.inet_pton(socket.AF_INET, host)
    except OSError:
        try:
            addr = b"\x04" + socket.inet_pton(socket.AF_INET6, host)
        except OSError:
            h = host.encode()
            addr = b"\x03" + bytes([len(h)]) + h
    s.sendall(b"\x05\x01\x00" + addr + struct.pack("!H", port))
    head = _recv_exact(s, 4)
    atyp = head[3]
    n = {1: 4, 4: 16}.get(atyp)
    if n is None:
        n = _recv_exact(s, 1)[0]
    _recv_exact(s, n + 2)
    if head[1] != 0:
        s.close()
        return None, head[1]
    return s, 0
