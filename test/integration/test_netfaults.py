"""Self-tests of the network fault tools of issue 13: dnsserver.py, netns.py, proxies.py and
blackhole.py, so that the relay's tests can trust them.

  dns        our DNS server under a private resolv.conf (netns.Resolver: unshare -m, bind
             mounts): a getaddrinfo in a subprocess gets the table's A/AAAA, sees an address
             change at the next lookup, EAI_NONAME for NXDOMAIN, EAI_AGAIN for SERVFAIL, and for
             a name never answered fails with EAI_AGAIN after the timeout x attempts we wrote
             (counted queries: one A and one AAAA per attempt); a truncated UDP answer makes it
             ask again over TCP
  hosts      a name that appears in the private hosts file later (rewritten in place) is seen
             by the next lookup, without a DNS query; a rewrite to another address too
  relay      the relay run under the wrapper (relaytest.Relay.wrapper) reaches a broker named
             in its configuration by a name only our DNS server knows; its PID is the relay's
  http       MQTT (raw CONNECT/SUBSCRIBE/PUBLISH bytes) through our HTTP CONNECT proxy to a
             Mosquitto, with Basic auth: the proxy saw the target name and the credentials;
             407 without or with wrong credentials, 403 / 502 on cue, 502 for a closed port
  socks5     the same through our SOCKS5 proxy: no-auth with an IPv4 address, user/password with
             a domain name only the proxy resolves; refusals (no acceptable method, wrong
             password, reply 0x02 on cue, 0x05 for a closed port), the IPv6 address type
  tls        TLS end to end through each proxy to a Mosquitto TLS listener (the test CA): MQTT
             inside works, and what the proxy carried starts with a TLS handshake record and
             does not contain the topic in clear
  blackhole  through blackhole.BlackHole: after drop(), a connection with unacknowledged data
             and TCP_USER_TIMEOUT fails with ETIMEDOUT, an idle one with TCP keepalive too,
             while a connection beside it (not through the hole) still works; a new connection
             gets no SYN-ACK (a timeout, not a refusal); neither end was closed by the proxy;
             after restore() new connections work, and a connection that was only stalled
             (no user timeout) resumes; no filter of ours is left on lo
Needs root (unshare, mount, tc): exits 77 otherwise.
"""
import errno
import os
import socket
import ssl
import sys
import threading
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402
import hostile_broker as hbm  # noqa: E402
import listeners as ls  # noqa: E402
import netns  # noqa: E402
import proxies  # noqa: E402
import blackhole  # noqa: E402


# ----------------------------------------------------------------------------------------------
# a raw MQTT 3.1.1 client over any socket (paho cannot use proxies)


class RawMqtt:
    def __init__(self, sock, client_id, timeout=10):
        self.s = sock
        self.s.settimeout(timeout)
        self.stream = hbm.Stream()
        self.pending = []
        self.client_id = client_id

    def send(self, data):
        self.s.sendall(data)

    def next(self):
        """The next packet from the broker (decoded dict with "raw")."""
        while not self.pending:
            d = self.s.recv(65536)
            if not d:
                raise rt.Failure("%s: connection closed by the other end" % self.client_id)
            self.pending += self.stream.feed(d)
        raw = self.pending.pop(0)
        info = hbm.decode(raw, hbm.V311)
        info["raw"] = raw
        return info

    def expect(self, type_):
        p = self.next()
        if p["type"] != type_:
            raise rt.Failure("%s: expected %s, got %s" % (self.client_id, type_, p))
        return p

    def connect(self):
        body = (hbm.mstr(b"MQTT") + bytes([4, 0x02]) + hbm.u16(60) +
                hbm.mstr(self.client_id.encode()))
        self.send(hbm.packet(hbm.CONNECT, 0, body))
        p = self.expect("CONNACK")
        return p["raw"][3]  # return code

    def subscribe(self, topic, qos=1, pid=1):
        self.send(hbm.packet(hbm.SUBSCRIBE, 2, hbm.u16(pid) + hbm.mstr(topic) + bytes([qos])))
        return self.expect("SUBACK")["raw"][-1]

    def publish(self, topic, payload, qos=1, pid=2):
        self.send(hbm.publish(hbm.V311, topic, payload, qos, pid))

    def ping(self):
        self.send(b"\xc0\x00")
        return self.expect("PINGRESP")

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def mqtt_roundtrip(t, m, broker, label, direct_client):
    """CONNECT, SUBSCRIBE, PUBLISH QoS 1 to itself over m; a message from a paho client on the
    broker arrives too. Checks everything byte for byte."""
    rc = m.connect()
    t.check(rc == 0, "%s: CONNACK 0 through the tunnel" % label, "return code %d" % rc)
    topic = "nf/%s/%s" % (label, os.urandom(3).hex())
    granted = m.subscribe(topic)
    t.check(granted == 1, "%s: SUBACK grants QoS 1" % label, "granted %d" % granted)
    payload = b"through " + label.encode() + b" " + os.urandom(8)
    m.publish(topic, payload, 1, 7)
    got = {}
    for _ in range(2):
        p = m.next()
        got[p["type"]] = p
    t.check("PUBACK" in got and got["PUBACK"]["pid"] == 7, "%s: PUBACK for packet 7" % label,
            str(got))
    pub = got.get("PUBLISH")
    t.check(pub is not None and pub["topic"] == topic.encode() and pub["payload"] == payload,
            "%s: our own PUBLISH came back byte for byte" % label, str(pub))
    if pub["qos"]:
        m.send(hbm.ack(hbm.PUBACK, pub["pid"]))
    other = b"from a direct client " + os.urandom(4)
    direct_client.publish(topic, other, 1)
    direct_client.wait_published()
    p = m.expect("PUBLISH")
    t.check(p["payload"] == other, "%s: a message published on the broker arrived through the "
            "tunnel" % label, rt.short(p["payload"]))
    if p["qos"]:
        m.send(hbm.ack(hbm.PUBACK, p["pid"]))
    return topic


# ----------------------------------------------------------------------------------------------


def dns_section(t):
    t.section("dns: our server under a private resolv.conf")
    res = netns.Resolver(t, timeout=1, attempts=1)
    d = res.dns
    t.note("DNS server %s:%d; resolv.conf %s" % (d.addr, d.port, res.resolv_path))
    # a long-lived process started now, with timeout:1 in its resolv.conf (as the relay would)
    lk = netns.Looker(res)
    d.set("broker.test", a=["127.0.0.1"], aaaa=["::1"])
    r = netns.getaddrinfo(res, "broker.test")
    t.check(r["ok"] and r["addrs"] == ["127.0.0.1", "::1"],
            "broker.test resolves to the table's A and AAAA", str(r))
    t.check(d.queries("broker.test", "A") == 1 and d.queries("broker.test", "AAAA") == 1,
            "one A and one AAAA query counted", str(d.log))

    d.set("broker.test", a=["127.0.0.2"])
    r = netns.getaddrinfo(res, "broker.test", "4")
    t.check(r["ok"] and r["addrs"] == ["127.0.0.2"],
            "after set() the next lookup gets the new address", str(r))

    d.nxdomain("gone.test")
    r = netns.getaddrinfo(res, "gone.test")
    t.check(not r["ok"] and r["name"] == "EAI_NONAME", "NXDOMAIN -> EAI_NONAME", str(r))
    t.check(d.queries("gone.test") >= 1, "the NXDOMAIN query was counted")

    d.servfail("broken.test")
    r = netns.getaddrinfo(res, "broken.test", "4")
    t.check(not r["ok"] and r["name"] == "EAI_AGAIN", "SERVFAIL -> EAI_AGAIN", str(r))

    timeout, attempts = 2, 1
    res.set_options(timeout=timeout, attempts=attempts)  # in place: the long-lived one sees it
    d.drop("hang.test")
    r = lk.getaddrinfo("hang.test")
    t.note("a name never answered, timeout:%d attempts:%d (resolv.conf rewritten after the "
           "process started): %s after %.2f s" % (timeout, attempts, r.get("name"),
                                                 r["seconds"]))
    t.check(not r["ok"] and r["name"] == "EAI_AGAIN", "never answered -> EAI_AGAIN", str(r))
    t.check(d.queries("hang.test", "A") == attempts and d.queries("hang.test", "AAAA") == attempts,
            "one A and one AAAA query per attempt (%d)" % attempts, str(d.log))
    # a lower bound only: the resolver cannot give up before its timeout (an upper bound
    # just proves the wait is bounded)
    t.check(timeout * attempts - 0.1 <= r["seconds"] < timeout * attempts + 20,
            "the lookup gave up after the timeout written in resolv.conf (%d s): the running "
            "process re-read the file" % (timeout * attempts), "%.2f s" % r["seconds"])
    res.set_options(timeout=1, attempts=1)

    d.truncate_udp = True
    d.set("big.test", a=["127.0.0.3"])
    r = netns.getaddrinfo(res, "big.test", "4")
    d.truncate_udp = False
    protos = sorted({e[1] for e in d.log if e[2] == "big.test"})
    t.check(r["ok"] and r["addrs"] == ["127.0.0.3"] and protos == ["tcp", "udp"],
            "a truncated UDP answer: the resolver asked again over TCP and got the address",
            "%s, protocols %s" % (r, protos))
    return res, lk


def hosts_section(t, res, lk):
    t.section("hosts: a name that appears in the private hosts file later")
    d = res.dns
    # lk: the long-lived process (its mounts were made before any change)
    r = lk.getaddrinfo("late.test", "4")
    t.check(not r["ok"] and r["name"] == "EAI_NONAME", "late.test is unknown at first", str(r))
    before = d.queries("late.test")
    res.add_host("127.0.0.5", "late.test")
    r = lk.getaddrinfo("late.test", "4")
    t.check(r["ok"] and r["addrs"] == ["127.0.0.5"],
            "after add_host() the next lookup of the running process finds it", str(r))
    t.check(d.queries("late.test") == before, "answered from the hosts file (no DNS query)",
            "%d queries, %d before" % (d.queries("late.test"), before))
    res.set_hosts([("127.0.0.6", "late.test")])
    r = lk.getaddrinfo("late.test", "4")
    t.check(r["ok"] and r["addrs"] == ["127.0.0.6"],
            "after set_hosts() (rewritten in place) the next lookup sees the new address",
            str(r))
    with open("/etc/hosts") as f:
        t.check("late.test" not in f.read(), "the real /etc/hosts is untouched")


def relay_section(t, res):
    t.section("relay: run under the private resolver, a broker known only to our DNS")
    src = t.broker("src")
    dst = t.broker("dst")
    res.dns.set("dst.broker.test", a=["127.0.0.1"])
    r = t.relay(brokers=[{"name": "src", "url": src.url},
                         {"name": "dst", "url": "mqtt://dst.broker.test:%d" % dst.port}],
                routes=[{"from": "src", "to": "dst", "filter": "nf/#", "qos": 1}], start=False)
    r.wrapper = res.wrapper()
    r.start()
    r.wait_ready({"src": src, "dst": dst})
    sub = t.client(dst, client_id="nf-sub")
    sub.subscribe("nf/#", 1)
    pub = t.client(src, client_id="nf-pub")
    for i in range(5):
        pub.publish("nf/x", b"m%d" % i, 1)
    pub.wait_published()
    ok = sub.wait_for(lambda ms: len(ms) >= 5, 20)
    t.check(ok and [m.payload for m in sub.received()] == [b"m%d" % i for i in range(5)],
            "5 messages crossed to the broker named dst.broker.test",
            str([m.payload for m in sub.received()]))
    t.check(res.dns.queries("dst.broker.test") >= 1,
            "the relay asked our DNS server for dst.broker.test (%d queries)"
            % res.dns.queries("dst.broker.test"))
    exe = os.readlink("/proc/%d/exe" % r.pid)
    t.check(os.path.samefile(exe, t.relay_bin), "relay.pid is the relay itself (the wrapper "
            "exec'd it)", exe)
    with open("/proc/%d/mountinfo" % r.pid) as f:
        mounts = f.read()
    t.check(" /etc/resolv.conf " in mounts and " /etc/hosts " in mounts,
            "the relay sees its own /etc/resolv.conf and /etc/hosts (bind mounts)")
    with open("/proc/self/mountinfo") as f:
        t.check(" /etc/resolv.conf " not in f.read(), "the test's own namespace has no such "
                "mount")
    r.proc.kill()
    r.proc.wait(10)
    sub.stop()
    pub.stop()


def http_section(t, broker, direct):
    t.section("http: MQTT through our HTTP CONNECT proxy")
    hp = proxies.HttpConnectProxy(t, auth=("alice", "s3cret")).start()
    hp.hosts["mqtt.broker.test"] = "127.0.0.1"
    s, status = proxies.http_connect(hp.port, "mqtt.broker.test", broker.port,
                                     auth=("alice", "s3cret"))
    t.check(status == 200, "CONNECT with the right credentials: 200", str(status))
    m = RawMqtt(s, "nf-http")
    mqtt_roundtrip(t, m, broker, "http", direct)
    req = hp.requests[-1]
    t.check(req.target == "mqtt.broker.test:%d" % broker.port and
            req.auth == ("alice", "s3cret"),
            "the proxy recorded the target name and the Basic credentials", str(req))
    m.close()
    t.check(rt.wait_until(lambda: hp.bytes_up > 0 and hp.bytes_down > 0, 5),
            "bytes counted: %d up, %d down" % (hp.bytes_up, hp.bytes_down))
    for auth, what in ((None, "no credentials"), (("alice", "wrong"), "a wrong password")):
        s, status = proxies.http_connect(hp.port, "127.0.0.1", broker.port, auth=auth)
        t.check(s is None and status == 407, "%s: 407" % what, str(status))
    hp.refuse_with(403)
    _, status = proxies.http_connect(hp.port, "127.0.0.1", broker.port, ("alice", "s3cret"))
    t.check(status == 403, "refuse_with(403): 403", str(status))
    hp.refuse_with(None)
    closed = rt.free_port()
    _, status = proxies.http_connect(hp.port, "127.0.0.1", closed, ("alice", "s3cret"))
    t.check(status == 502, "a target port nobody listens on: 502", str(status))
    t.check([r.status for r in hp.requests] == [200, 407, 407, 403, 502],
            "every CONNECT was recorded with its answer", str([r.status for r in hp.requests]))
    t.check(hp.connections == 5 and hp.tunnels == 1, "5 connections, 1 tunnel",
            "%d, %d" % (hp.connections, hp.tunnels))


def socks_section(t, broker, direct):
    t.section("socks5: MQTT through our SOCKS5 proxy")
    sp = proxies.Socks5Proxy(t).start()
    s, code = proxies.socks5_connect(sp.port, "127.0.0.1", broker.port)
    t.check(code == 0, "no-auth CONNECT to an IPv4 address: reply 0", str(code))
    m = RawMqtt(s, "nf-socks")
    mqtt_roundtrip(t, m, broker, "socks5", direct)
    m.close()
    req = sp.requests[-1]
    t.check(req.extra["atyp"] == "ipv4" and req.auth is None and sp.methods_seen[-1] == [0],
            "recorded: IPv4 address type, no authentication", str(req))

    sa = proxies.Socks5Proxy(t, auth=("bob", "pw")).start()
    sa.hosts["socks.broker.test"] = "127.0.0.1"
    s, code = proxies.socks5_connect(sa.port, "socks.broker.test", broker.port,
                                     auth=("bob", "pw"))
    t.check(code == 0, "user/password CONNECT to a domain name: reply 0", str(code))
    m = RawMqtt(s, "nf-socks-auth")
    t.check(m.connect() == 0, "CONNACK through the authenticated SOCKS5 tunnel")
    m.close()
    req = sa.requests[-1]
    t.check(req.extra["atyp"] == "domain" and req.host == "socks.broker.test" and
            req.auth == ("bob", "pw"),
            "recorded: the domain name as sent (resolved by the proxy) and the credentials",
            str(req))
    _, code = proxies.socks5_connect(sa.port, "127.0.0.1", broker.port, auth=("bob", "nope"))
    t.check(code == "auth failed", "a wrong password is refused (RFC 1929 status 1)", str(code))
    _, code = proxies.socks5_connect(sa.port, "127.0.0.1", broker.port)
    t.check(code == "no method", "no acceptable method (only no-auth offered): 0xFF", str(code))
    sa.refuse_with(0x02)
    _, code = proxies.socks5_connect(sa.port, "127.0.0.1", broker.port, auth=("bob", "pw"))
    t.check(code == 0x02, "refuse_with(0x02): reply 0x02", str(code))
    sa.refuse_with(None)
    _, code = proxies.socks5_connect(sa.port, "127.0.0.1", rt.free_port(), auth=("bob", "pw"))
    t.check(code == 0x05, "a target port nobody listens on: reply 0x05", str(code))
    _, code = proxies.socks5_connect(sa.port, "::1", rt.free_port(), auth=("bob", "pw"))
    t.check(sa.requests[-1].extra["atyp"] == "ipv6" and sa.requests[-1].host == "::1",
            "the IPv6 address type is parsed (%s, reply %s)" % (sa.requests[-1].target, code))


def tls_section(t, direct):
    t.section("tls: end to end through each proxy")
    certs = ls.make_certs(t)
    b = ls.broker(t, "tlsb", [ls.Tls("tls", certs)])
    ctx = ssl.create_default_context(cafile=certs.path("ca"))
    direct_tls = t.client(b, version="3.1.1", client_id="nf-direct-tls")
    hp = proxies.HttpConnectProxy(t).start()
    sp = proxies.Socks5Proxy(t, auth=("u", "p")).start()
    for label, proxy, opener in (
            ("tls-http", hp, lambda: proxies.http_connect(hp.port, "localhost",
                                                          b.ports["tls"])),
            ("tls-socks5", sp, lambda: proxies.socks5_connect(sp.port, "localhost",
                                                              b.ports["tls"], ("u", "p")))):
        s, code = opener()
        t.check(s is not None, "%s: tunnel open" % label, str(code))
        tls = ctx.wrap_socket(s, server_hostname="localhost")
        t.check(tls.version() is not None, "%s: TLS handshake with the broker, certificate "
                "verified against the test CA (%s)" % (label, tls.version()))
        m = RawMqtt(tls, "nf-" + label)
        topic = mqtt_roundtrip(t, m, b, label, direct_tls)
        m.close()
        head = proxy.first_bytes(-1, "up", 4096)
        t.check(head[:2] == b"\x16\x03", "%s: the proxy carried a TLS handshake record first"
                % label, rt.short(head, 8))
        t.check(topic.encode() not in head and topic.encode() not in
                proxy.first_bytes(-1, "down", 4096),
                "%s: the topic never crossed the proxy in clear" % label)


def blackhole_section(t, broker):
    t.section("blackhole: a peer that stops answering without closing")
    hole = blackhole.BlackHole(t, broker.port, log=t.note).start()
    # a: unacknowledged data + TCP_USER_TIMEOUT; b: idle + keepalive; c: stalled, resumes
    conns = {}
    for name in ("utimeout", "keepalive", "resume"):
        s = socket.create_connection(("127.0.0.1", hole.port), timeout=10)
        m = RawMqtt(s, "nf-hole-" + name)
        t.check(m.connect() == 0, "%s: CONNACK through the hole" % name)
        m.ping()
        conns[name] = m
    a, b, c = conns["utimeout"].s, conns["keepalive"].s, conns["resume"].s
    a.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 1500)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    b.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    b.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    b.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)
    # beside the hole: same keepalive settings, straight to the broker
    side = RawMqtt(socket.create_connection(("127.0.0.1", broker.port), timeout=10), "nf-side")
    side.connect()
    side.s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    side.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    side.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    side.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)

    hole.drop()
    t.check(any(p == hole.port for _, _, ps in blackhole.our_filters() for p in ps),
            "a filter of ours drops port %d on lo" % hole.port, str(blackhole.our_filters()))
    results = {}

    def wait_error(name, sock, send):
        sock.settimeout(30)
        t0 = time.monotonic()
        try:
            if send:
                sock.sendall(b"\xc0\x00")  # PINGREQ: unacknowledged from now on
            d = sock.recv(1)
            results[name] = ("data" if d else "eof", time.monotonic() - t0)
        except OSError as e:  # ETIMEDOUT is TimeoutError, as socket.timeout is: errno tells
            results[name] = (errno.errorcode.get(e.errno, "no error within 30 s")
                             if e.errno else "no error within 30 s", time.monotonic() - t0)

    th = [threading.Thread(target=wait_error, args=("utimeout", a, True)),
          threading.Thread(target=wait_error, args=("keepalive", b, False))]
    for x in th:
        x.start()
    c.sendall(b"\xc0\x00")  # stalled, no user timeout: it must survive the hole
    s_new = socket.socket()
    s_new.settimeout(1.5)
    try:
        s_new.connect(("127.0.0.1", hole.port))
        new_result = "connected"
    except OSError as e:
        new_result = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else "timeout"
    finally:
        s_new.close()
    for x in th:
        x.join(40)
    t.note("results: %s" % ", ".join("%s %s after %.1f s" % (k, v[0], v[1])
                                     for k, v in sorted(results.items())))
    t.check(results.get("utimeout", ("?",))[0] == "ETIMEDOUT",
            "unacknowledged data + TCP_USER_TIMEOUT 1.5 s: ETIMEDOUT", str(results))
    t.check(results.get("keepalive", ("?",))[0] == "ETIMEDOUT",
            "idle + keepalive (idle 1 s, interval 1 s, 2 probes): ETIMEDOUT", str(results))
    t.check(new_result == "timeout", "a new connection gets no answer to its SYN (timeout, not "
            "refused)", new_result)
    side.ping()
    t.check(True, "the connection beside the hole (same keepalive) still answers PINGREQ")
    links = hole.proxy.snapshot()
    t.check(len(links) == 3 and all(ln.open for ln in links),
            "the proxy closed none of its 3 links: both ends of each just hear nothing",
            str(links))

    hole.restore()
    t.check(not any(p == hole.port for _, _, ps in blackhole.our_filters() for p in ps),
            "restore() removed the filter")
    try:
        p = conns["resume"].expect("PINGRESP")
        resumed = p["type"]
    except (OSError, rt.Failure) as e:
        resumed = repr(e)
    t.check(resumed == "PINGRESP", "the stalled connection resumed: its PINGREQ, retransmitted "
            "after restore(), got its PINGRESP", resumed)
    m = RawMqtt(socket.create_connection(("127.0.0.1", hole.port), timeout=10), "nf-hole-new")
    t.check(m.connect() == 0, "a new connection through the hole works again")
    for x in list(conns.values()) + [m, side]:
        x.close()
    hole.stop()
    mine = [f for f in blackhole.our_filters() if f[1] == os.getpid()]
    t.check(not mine, "no filter of this process is left on lo", str(mine))


def run(t):
    for ok, why in (netns.available(), blackhole.available()):
        if not ok:
            print("SKIP: %s" % why)
            sys.exit(rt.SKIP)
    res, lk = dns_section(t)
    hosts_section(t, res, lk)
    relay_section(t, res)
    broker = t.broker("mq")
    direct = t.client(broker, version="3.1.1", client_id="nf-direct")
    http_section(t, broker, direct)
    socks_section(t, broker, direct)
    tls_section(t, direct)
    blackhole_section(t, broker)


if __name__ == "__main__":
    rt.main(run, __doc__)
