"""Proxies (issue 13, item 3): HTTP CONNECT and SOCKS5 per broker, relay.proxy and
relay.no_proxy, TLS end to end through the tunnel, refusals said clearly, the password nowhere.

One Mosquitto ("tb") with a plain, a TLS (mqtts), a WebSocket and a WebSocket-over-TLS
listener, reached only through proxies of ours (proxies.py) by the name "broker.test", which
only the proxies can resolve (proxy.hosts): the relay sends the name, never resolves it. A
second Mosquitto ("local") is reached directly.

  tunnels  relay.proxy = an HTTP CONNECT proxy with Basic auth (user "relay", a password with
           ':' and '@' written %3A and %40), relay.no_proxy = ["127.0.0.0/8"]:
             viahttp    mqtts://broker.test  (relay.proxy)
             wshttp     ws://broker.test     (relay.proxy)
             viasocks   wss://broker.test    (proxy = socks5 with user and password)
             plainsocks mqtt://broker.test   (proxy = socks5, no authentication)
             local      mqtt://127.0.0.1     (no_proxy: direct)
           each proxied link connects; the proxies saw the name broker.test and the ports, the
           decoded credentials; the TLS tunnels start with a TLS handshake record (0x16) and
           do not carry the topics in clear, the plain one starts with CONNECT (0x10), the ws
           one with "GET /mqtt"; the HTTP proxy saw nothing for local's port; messages cross
           both ways through every tunnel, byte for byte.
  cut      the HTTP proxy cuts its tunnels: the links come back through it.
  refused  wrong password at the HTTP proxy (407) and at the SOCKS5 proxy (RFC 1929 status),
           no credentials where the SOCKS5 proxy wants some, and a 403 on cue: one clear line
           each, naming the proxy and the user; the relay retries.
  secret   no password (right or wrong, as written or decoded) in the relay's log, in
           --check's output (which shows each proxy as "(password set)"), in /metrics or in
           /api/v1/status.
"""
import sys
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402
import listeners as ls  # noqa: E402
import proxies  # noqa: E402

PASS_HTTP = "s3cret:pa@ss"
PASS_HTTP_URL = "s3cret%3Apa%40ss"
PASS_SOCKS = "sockpass-42"
WRONG = "wrong-pw-77"


def connected(relay, name):
    return any(" %s#0: connected to" % name in l for l in relay.log_lines())


def exchange(t, relay, local, tb, name, out_prefix, back_prefix, n=5):
    """n messages local -> tb through name's tunnel, and n back."""
    s_tb = t.client(tb, client_id="sub-tb-" + name)
    s_tb.subscribe(out_prefix + "#", qos=1)
    s_local = t.client(local, client_id="sub-local-" + name)
    s_local.subscribe(back_prefix + "#", qos=1)
    p_local = t.client(local, client_id="pub-local-" + name)
    p_tb = t.client(tb, client_id="pub-tb-" + name)
    out = [((out_prefix + "m%d" % i).encode(), bytes([i]) * (i * 37 + 1)) for i in range(n)]
    back = [((back_prefix + "m%d" % i).encode(), b"back %d \x00\xff" % i) for i in range(n)]
    for topic, payload in out:
        p_local.publish(topic.decode(), payload, qos=1)
    for topic, payload in back:
        p_tb.publish(topic.decode(), payload, qos=1)
    p_local.wait_published(20)
    p_tb.wait_published(20)
    ok1 = s_tb.wait_for(lambda m: len(m) >= n, 20)
    ok2 = s_local.wait_for(lambda m: len(m) >= n, 20)
    d1 = rt.Delivery(out, s_tb.received())
    d2 = rt.Delivery(back, s_local.received())
    t.check(ok1 and ok2 and not d1.missing and not d2.missing and not d1.unexpected and
            not d2.unexpected,
            "%s: %d messages each way through the tunnel, byte for byte" % (name, n),
            d1.describe() + " / " + d2.describe())
    for c in (s_tb, s_local, p_local, p_tb):
        c.stop()


def run(t):
    certs = ls.make_certs(t)
    tb = ls.broker(t, "tb", [ls.Tls("tls", certs), ls.Ws("ws"), ls.Ws("wss", certs=certs)])
    local = t.broker("local")
    hp = proxies.HttpConnectProxy(t, auth=("relay", PASS_HTTP)).start()
    sp = proxies.Socks5Proxy(t, auth=("sockuser", PASS_SOCKS)).start()
    so = proxies.Socks5Proxy(t, name="socks-open").start()
    for p in (hp, sp, so):
        p.hosts["broker.test"] = "127.0.0.1"
    mport = rt.free_port()
    tls = {"ca_file": certs.path("ca"), "server_name": "localhost"}
    http_url = "http://relay:%s@127.0.0.1:%d" % (PASS_HTTP_URL, hp.port)
    socks_url = "socks5://sockuser:%s@127.0.0.1:%d" % (PASS_SOCKS, sp.port)

    t.section("tunnels: HTTP CONNECT and SOCKS5, mqtt/mqtts/ws/wss through them")
    brokers = [
        {"name": "viahttp", "url": "mqtts://broker.test:%d" % tb.ports["tls"], "tls": tls},
        {"name": "wshttp", "url": "ws://broker.test:%d/mqtt" % tb.ports["ws"]},
        {"name": "viasocks", "url": "wss://broker.test:%d/mqtt" % tb.ports["wss"], "tls": tls,
         "proxy": socks_url},
        {"name": "plainsocks", "url": "mqtt://broker.test:%d" % tb.port,
         "proxy": "socks5://127.0.0.1:%d" % so.port},
        {"name": "local", "url": local.url},
    ]
    routes = []
    for b, tag in (("viahttp", "http"), ("wshttp", "ws"), ("viasocks", "socks"),
                   ("plainsocks", "plain")):
        routes.append({"from": "local", "to": b, "filter": "out/%s/#" % tag})
        routes.append({"from": b, "to": "local", "filter": "back/%s/#" % tag})
    r = t.relay(relay={"metrics": "127.0.0.1:%d" % mport, "proxy": http_url,
                       "no_proxy": ["127.0.0.0/8"]},
                brokers=brokers, routes=routes)
    names = ["viahttp", "wshttp", "viasocks", "plainsocks", "local"]
    t.check(rt.wait_until(lambda: all(connected(r, n) for n in names), 20),
            "every link connects (four through proxies, local directly)",
            "\n".join(r.log_lines()[-20:]))
    targets = sorted(q.target for q in hp.requests if q.status == 200)
    want = sorted(["broker.test:%d" % tb.ports["tls"], "broker.test:%d" % tb.ports["ws"]])
    t.check(targets == want, "the HTTP proxy was asked for %s (the name, not an address)" % want,
            repr(hp.requests))
    t.check(all(q.auth == ("relay", PASS_HTTP) for q in hp.requests),
            "... with the user and the decoded password (%%3A -> ':', %%40 -> '@')",
            repr([q.auth for q in hp.requests]))
    t.check(all(str(local.port) not in q.target for q in hp.requests),
            "local (relay.no_proxy 127.0.0.0/8) went direct")
    sq = [q for q in sp.requests if q.status == 0]
    t.check(len(sq) >= 1 and sq[0].host == "broker.test" and sq[0].port == tb.ports["wss"] and
            sq[0].extra["atyp"] == "domain" and sq[0].auth == ("sockuser", PASS_SOCKS),
            "the SOCKS5 proxy got the name (domain address type) and user/password", repr(sq))
    oq = [q for q in so.requests if q.status == 0]
    t.check(len(oq) >= 1 and oq[0].auth is None and oq[0].port == tb.port,
            "the open SOCKS5 proxy: no authentication", repr(oq))

    def tunnel_index(proxy, port):
        for i, tn in enumerate(proxy.tunnels_list):
            if tn.request.port == port:
                return i
        return None

    i = tunnel_index(hp, tb.ports["tls"])
    t.check(i is not None and hp.first_bytes(i, "up", 1) == b"\x16" and
            hp.first_bytes(i, "down", 1) == b"\x16",
            "mqtts through HTTP CONNECT: TLS end to end (handshake records both ways)")
    i2 = tunnel_index(sp, tb.ports["wss"])
    t.check(i2 is not None and sp.first_bytes(i2, "up", 1) == b"\x16",
            "wss through SOCKS5: TLS end to end")
    i3 = tunnel_index(so, tb.port)
    t.check(i3 is not None and so.first_bytes(i3, "up", 1) == b"\x10",
            "mqtt through SOCKS5: MQTT CONNECT first")
    i4 = tunnel_index(hp, tb.ports["ws"])
    t.check(i4 is not None and hp.first_bytes(i4, "up", 9) == b"GET /mqtt",
            "ws through HTTP CONNECT: the WebSocket upgrade first")
    for name, tag in (("viahttp", "http"), ("wshttp", "ws"), ("viasocks", "socks"),
                      ("plainsocks", "plain")):
        exchange(t, r, local, tb, name, "out/%s/" % tag, "back/%s/" % tag)
    for proxy, idx in ((hp, i), (sp, i2)):
        tn = proxy.tunnels_list[idx]
        t.check(b"out/" not in tn.head["up"] and b"back/" not in tn.head["down"],
                "no topic in clear in the TLS tunnel through %s" % proxy.name)

    t.section("cut: the HTTP proxy cuts its tunnels; the links come back through it")
    n_before = len([q for q in hp.requests if q.status == 200])
    hp.cut()
    t.check(rt.wait_until(lambda: len([q for q in hp.requests if q.status == 200]) >= n_before + 2
                          and r.log_lines().count != 0 and
                          sum(1 for l in r.log_lines() if " viahttp#0: connected to" in l) >= 2 and
                          sum(1 for l in r.log_lines() if " wshttp#0: connected to" in l) >= 2,
                          20),
            "viahttp and wshttp reconnected through the proxy", "\n".join(r.log_lines()[-10:]))
    exchange(t, r, local, tb, "viahttp", "out/http/", "back/http/", n=2)

    t.section("refused: wrong credentials and refusals are said clearly")
    hp_bad = proxies.HttpConnectProxy(t, auth=("relay", PASS_HTTP), name="http-b").start()
    sp_bad = proxies.Socks5Proxy(t, auth=("sockuser", PASS_SOCKS), name="socks-b").start()
    hp_403 = proxies.HttpConnectProxy(t, name="http-403").start()
    hp_403.refuse_with(403)
    for p in (hp_bad, sp_bad, hp_403):
        p.hosts["broker.test"] = "127.0.0.1"
    reco = {"min": 200, "max": 400}
    r2 = t.relay(relay={"metrics": "127.0.0.1:%d" % rt.free_port()}, brokers=[
        {"name": "badhttp", "url": "mqtt://broker.test:%d" % tb.port, "reconnect": reco,
         "proxy": "http://relay:%s@127.0.0.1:%d" % (WRONG, hp_bad.port)},
        {"name": "badsocks", "url": "mqtt://broker.test:%d" % tb.port, "reconnect": reco,
         "proxy": "socks5://sockuser:%s@127.0.0.1:%d" % (WRONG, sp_bad.port)},
        {"name": "nocreds", "url": "mqtt://broker.test:%d" % tb.port, "reconnect": reco,
         "proxy": "socks5://127.0.0.1:%d" % sp_bad.port},
        {"name": "forbidden", "url": "mqtt://broker.test:%d" % tb.port, "reconnect": reco,
         "proxy": "http://127.0.0.1:%d" % hp_403.port},
        {"name": "local", "url": local.url},
    ], routes=[{"from": "local", "to": n, "filter": "x/%s/#" % n}
               for n in ("badhttp", "badsocks", "nocreds", "forbidden")], name="relay-refused")
    expect = {
        "badhttp": 'HTTP proxy 127.0.0.1:%d refused the credentials of user "relay" (HTTP 407'
                   % hp_bad.port,
        "badsocks": 'SOCKS5 proxy 127.0.0.1:%d refused the credentials of user "sockuser"'
                    % sp_bad.port,
        "nocreds": "SOCKS5 proxy 127.0.0.1:%d requires authentication" % sp_bad.port,
        "forbidden": "HTTP proxy 127.0.0.1:%d refused the tunnel to broker.test:%d: HTTP 403"
                     % (hp_403.port, tb.port),
    }

    def said(name):
        return [l for l in r2.log_lines() if " %s#0: " % name in l and expect[name] in l]

    t.check(rt.wait_until(lambda: all(len(said(n)) >= 2 for n in expect), 20),
            "each refusal said in one line, retried", "\n".join(r2.log_lines()[-20:]))
    for n in expect:
        t.note(said(n)[0])
    t.check(not any(connected(r2, n) for n in expect), "none of them connected")

    t.section("secret: the proxy passwords appear nowhere")
    st, out, err = t.run_relay_once(open(r.conf_path).read(), ["--check"], "check.conf")
    t.check(st == 0, "--check accepts the configuration", err)
    t.check('HTTP CONNECT proxy 127.0.0.1:%d, user "relay" (password set)' % hp.port in out and
            'SOCKS5 proxy 127.0.0.1:%d, user "sockuser" (password set)' % sp.port in out and
            "mqtt://127.0.0.1:%d: direct (relay.no_proxy)" % local.port in out,
            "--check names each proxy and says \"(password set)\"", out)
    st2, out2, err2 = t.run_relay_once(open(r2.conf_path).read(), ["--check"], "check2.conf")
    texts = {"relay log": r.stderr_text(), "relay-refused log": r2.stderr_text(),
             "--check": out + err + out2 + err2,
             "/metrics": rt.http_get(mport, "/metrics")[2],
             "/api/v1/status": rt.http_get(mport, "/api/v1/status")[2]}
    for what, text in texts.items():
        for pw in (PASS_HTTP, PASS_HTTP_URL, PASS_SOCKS, WRONG, "s3cret"):
            t.check(pw not in text, "%s: no %r" % (what, pw))
    r2.stop()
    r.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
