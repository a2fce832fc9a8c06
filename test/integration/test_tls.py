"""TLS links (issue 4, SPEC "Transports" and the tls keys): mqtts:// to Mosquitto TLS listeners.

Certificates come from certs/make-certs.sh, run into the test's temporary directory. One Mosquitto
("tls") has a plain listener (for the test's own clients) and three TLS listeners: "ok" (the
server certificate for localhost/127.0.0.1, signed by the test CA), "mtls" (the same, with
require_certificate true) and "expired" (a certificate of the test CA that expired in 2020). A
second Mosquitto ("nv") has only an expired-certificate TLS listener, for verify = false.

One relay holds every case at once, so a failing link visibly leaves the others alone:
  ok        right CA, both directions: messages cross byte for byte (MQTT 5 over TLS)
  mtls      client certificate and key against require_certificate true: messages cross
  wrongca   ca_file = an unrelated CA                -> refused: "unknown CA"
  wronghost server_name = "wrong.example"            -> refused: "name mismatch"
  expired   the expired server certificate          -> refused: "expired"
  nocert    no client certificate, require_certificate -> refused: "certificate required"
  nv        verify = false against the expired certificate: works, and a WARN at every connect
and a route between two plain brokers (pa -> pb) that keeps flowing while the refused links
retry. Each refusal must be one clear log line per attempt naming what failed (no other WARN or
ERROR line for that connection), repeated at least twice (the relay stays alive and retries,
never falls back to plain text: the TLS listener would not speak it anyway); the one tolerated
exception is a TLS 1.3 race on "nocert" (see VAGUE), printed when it happens. The lines are
printed, as a user sees them.
"""
import re
import sys

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402
import listeners as ls  # noqa: E402

RECO = {"min": 250, "max": 1000}

# broker name in the relay -> (what the refusal line must say, as a regex, and a description)
REFUSALS = {
    "wrongca": (r"unknown CA", "unknown CA"),
    "wronghost": (r"name mismatch", "name mismatch"),
    "expired": (r"expired", "expired"),
    "nocert": (r"certificate required", "certificate required"),
}

# With TLS 1.3 the server refuses a missing client certificate after the client finished its
# side of the handshake: the alert "certificate required" and the close come right after each
# other, and now and then (about one run in ten here) the relay sees the close before it has
# read the alert. That attempt is then logged as this vaguer line. Tolerated (and reported by
# the test) for "nocert" only; the clear line must still be there at least twice.
VAGUE = {"nocert": r": connection closed by server, retry in "}


def who_lines(relay, who, levels=("WARN", "ERROR")):
    """The relay's log lines of one connection ("name#0: ...") at the given levels."""
    out = []
    for line in relay.log_lines():
        m = rt.LOG_LINE.match(line)
        if m and m.group(1).strip() in levels and (" %s: " % who) in line:
            out.append(line)
    return out


def connected_lines(relay, who):
    return [l for l in who_lines(relay, who, ("INFO",)) if ": connected to " in l]


def cross(t, pub, sub, prefix, n, what):
    """Publishes n QoS 1 messages (binary payloads, one of 64 KiB) under prefix and checks they
    arrive at sub byte for byte, exactly once."""
    expected = []
    for i in range(n):
        topic = "%s/m%d" % (prefix, i)
        payload = bytes((i * 31 + k) % 256 for k in range(64 * 1024 if i == 0 else 17 + i))
        pub.publish(topic, payload, 1)
        expected.append((topic.encode(), payload))
    pub.wait_published(30)
    mine = lambda m: m.topic.startswith(prefix.encode() + b"/")  # noqa: E731
    sub.wait_for(lambda ms: len([m for m in ms if mine(m)]) >= n, 30)
    d = rt.Delivery(expected, sub.received(mine))
    t.check(not d.missing and not d.unexpected and d.duplicates == 0,
            "%s: %d messages cross byte for byte, once each" % (what, n), d.describe())


def run(t):
    t.section("brokers, certificates, one relay with every TLS case")
    certs = ls.make_certs(t)
    pa = t.broker("pa")
    pb = t.broker("pb")
    tb = ls.broker(t, "tls", [ls.Tls("ok", certs),
                              ls.Tls("mtls", certs, require_certificate=True),
                              ls.Tls("expired", certs, cert="expired")])
    nv = ls.broker(t, "nv", [ls.Tls("tls", certs, cert="expired")])

    ca = certs.path("ca")
    brokers = [
        {"name": "pa", "url": pa.url, "version": "5"},
        {"name": "pb", "url": pb.url, "version": "3.1.1"},
        {"name": "ok", "url": tb.url_of("ok"), "version": "5", "tls": {"ca_file": ca},
         "reconnect": RECO},
        {"name": "mtls", "url": tb.url_of("mtls"), "version": "5",
         "tls": {"ca_file": ca, "cert_file": certs.path("client"),
                 "key_file": certs.key("client")}, "reconnect": RECO},
        {"name": "wrongca", "url": tb.url_of("ok"), "version": "5",
         "tls": {"ca_file": certs.path("other-ca")}, "reconnect": RECO},
        {"name": "wronghost", "url": tb.url_of("ok"), "version": "5",
         "tls": {"ca_file": ca, "server_name": "wrong.example"}, "reconnect": RECO},
        {"name": "expired", "url": tb.url_of("expired"), "version": "5",
         "tls": {"ca_file": ca}, "reconnect": RECO},
        {"name": "nocert", "url": tb.url_of("mtls"), "version": "5",
         "tls": {"ca_file": ca}, "reconnect": RECO},
        {"name": "nv", "url": nv.url_of("tls"), "version": "5",
         "tls": {"verify": False}, "reconnect": RECO},
        # the older versions over the same TLS listener
        {"name": "ok311", "url": tb.url_of("ok"), "version": "3.1.1", "tls": {"ca_file": ca},
         "reconnect": RECO},
        {"name": "ok31", "url": tb.url_of("ok"), "version": "3.1", "tls": {"ca_file": ca},
         "reconnect": RECO},
    ]
    routes = [
        {"name": "plain", "from": "pa", "to": "pb", "filter": "plain/#", "qos": 1},
        {"name": "ok-up", "from": "pa", "to": "ok", "filter": "up/ok/#", "qos": 1},
        {"name": "ok-down", "from": "ok", "to": "pa", "filter": "down/ok/#", "qos": 1},
        {"name": "mtls-up", "from": "pa", "to": "mtls", "filter": "up/mtls/#", "qos": 1},
        {"name": "mtls-down", "from": "mtls", "to": "pa", "filter": "down/mtls/#", "qos": 1},
        {"name": "nv-up", "from": "pa", "to": "nv", "filter": "up/nv/#", "qos": 1},
        {"name": "ok311-up", "from": "pa", "to": "ok311", "filter": "up/ok311/#", "qos": 1},
        {"name": "ok311-down", "from": "ok311", "to": "pa", "filter": "down/ok311/#", "qos": 1},
        {"name": "ok31-up", "from": "pa", "to": "ok31", "filter": "up/ok31/#", "qos": 1},
        {"name": "ok31-down", "from": "ok31", "to": "pa", "filter": "down/ok31/#", "qos": 1},
    ] + [{"name": "to-" + n, "from": "pa", "to": n, "filter": "neg/%s/#" % n, "qos": 1}
         for n in REFUSALS]
    relay = t.relay(relay={"id": "tls-it"}, brokers=brokers, routes=routes)

    for who in ("ok#0", "mtls#0", "nv#0", "pa#0", "pb#0", "ok311#0", "ok31#0"):
        ok = rt.wait_until(lambda: relay.check_alive() or connected_lines(relay, who), 20)
        t.check(ok, "%s connects" % who, "\n".join(relay.log_lines()[-20:]))
    # the relay's client ids reach the TLS broker's log: over TLS, not another way
    t.check(rt.wait_until(lambda: {"tls-it-ok", "tls-it-mtls"} <= set(tb.connected_ids()), 10),
            "the TLS broker's log shows tls-it-ok and tls-it-mtls connecting",
            repr(tb.connected_ids()))
    # subscriptions in place before publishing (the source side of each route)
    want = {("tls-it-ok", "down/ok/#"), ("tls-it-mtls", "down/mtls/#"),
            ("tls-it-ok311", "down/ok311/#"), ("tls-it-ok31", "down/ok31/#")}
    t.check(rt.wait_until(lambda: want <= {(s[0], s[2]) for s in tb.subscriptions()}, 15),
            "the relay subscribed on the TLS broker through both TLS listeners",
            repr(tb.subscriptions()))
    t.check(rt.wait_until(lambda: "tls-it-pa" in {s[0] for s in pa.subscriptions()} and
                          len([s for s in pa.subscriptions() if s[0] == "tls-it-pa"]) >=
                          len([r for r in routes if r["from"] == "pa"]), 15),
            "the relay subscribed every route on pa")

    t.section("right CA and mTLS: messages cross byte for byte, both ways")
    a_pub = t.client(pa, "5")
    a_sub = t.client(pa, "5").subscribe("down/#", 1)
    t_sub = t.client(tb, "5").subscribe("up/#", 1)
    t_pub = t.client(tb, "5")
    nv_sub = t.client(nv, "5").subscribe("up/#", 1)
    cross(t, a_pub, t_sub, "up/ok", 20, "pa -> TLS (right CA)")
    cross(t, t_pub, a_sub, "down/ok", 20, "TLS (right CA) -> pa")
    cross(t, a_pub, t_sub, "up/mtls", 20, "pa -> mTLS (client certificate)")
    cross(t, t_pub, a_sub, "down/mtls", 20, "mTLS -> pa")
    cross(t, a_pub, nv_sub, "up/nv", 10, "pa -> verify = false (expired certificate)")
    cross(t, a_pub, t_sub, "up/ok311", 10, "pa -> TLS at MQTT 3.1.1")
    cross(t, t_pub, a_sub, "down/ok311", 10, "TLS at MQTT 3.1.1 -> pa")
    cross(t, a_pub, t_sub, "up/ok31", 10, "pa -> TLS at MQTT 3.1")
    cross(t, t_pub, a_sub, "down/ok31", 10, "TLS at MQTT 3.1 -> pa")

    t.section("refusals: one clear line per attempt, retried, other routes flowing")
    b_sub = t.client(pb, "3.1.1").subscribe("plain/#", 1)
    seen = {}

    def refused_twice():
        relay.check_alive()
        for name in REFUSALS:
            seen[name] = who_lines(relay, name + "#0")
        return all(len([l for l in seen[n] if re.search(REFUSALS[n][0], l)]) >= 2
                   for n in REFUSALS)

    # Mosquitto logs each TLS attempt as "New connection from H:P on port N." or, when the
    # handshake fails early, "Client connection from H failed: ..." (without the port): the
    # good links stay up, so what grows is the refused links' retries.
    tls_ports = set(tb.ports.values())

    def tls_attempts():
        n = 0
        for l in tb.log_lines():
            m = re.match(r"^New connection from \S+ on port (\d+)\.$", l)
            if (m and int(m.group(1)) in tls_ports) or re.match(r"^Client connection from \S+ "
                                                                 r"failed: ", l):
                n += 1
        return n

    attempts_before = tls_attempts()
    # keep the plain route busy for 3 s while the refused links retry (and until each refusal
    # is in the log twice, bounded: the relay logs at most 3 such lines per 10 s)
    k = 0
    t0 = rt.time.monotonic()
    while k < 12 or (not refused_twice() and k < 100):
        a_pub.publish("plain/k%d" % k, b"during retries %d" % k, 1)
        k += 1
        rt.time.sleep(0.25)
    refused_twice()
    attempts = tls_attempts() - attempts_before
    t.note("%d plain messages published over %.1fs" % (k, rt.time.monotonic() - t0))
    # 4 refused links, backoff capped at reconnect.max = 1 s: about 12 in 3 s
    t.check(attempts >= len(REFUSALS),
            "the refused links keep retrying: the TLS broker saw %d more TLS connection "
            "attempts in that time (the relay rate-limits its repeated lines, the broker's log "
            "does not)" % attempts)
    relay.check_alive()
    t.note("the refusals as the relay logs them:")
    for name in REFUSALS:
        for line in seen[name][:2]:
            t.note("  " + line)
    for name, (rx, text) in REFUSALS.items():
        lines = seen[name]
        clear = [l for l in lines if re.search(rx, l)]
        t.check(len(clear) >= 2, "%s: at least two attempts in the log naming the failure (%d)"
                % (name, len(clear)), "\n".join(relay.log_lines()[-30:]))
        vague = [l for l in lines if name in VAGUE and re.search(VAGUE[name], l)]
        if vague:
            t.note("RELAY: %d attempt(s) of %s logged without the reason (TLS 1.3: the close "
                   "overtook the alert): %s" % (len(vague), name, vague[0]))
        bad = [l for l in lines if not re.search(rx, l) and l not in vague]
        t.check(not bad, "%s: every WARN/ERROR line of %s#0 names the failure (\"%s\")"
                % (name, name, text), "\n".join(bad))
        t.check(all(re.search(r"retry in \d+(\.\d+)?s", l) for l in lines),
                "%s: each refusal line says when it retries" % name, "\n".join(lines))
        t.check(not connected_lines(relay, name + "#0"),
                "%s: never connected (no plain-text fallback)" % name)
    # the TLS broker never saw an MQTT CONNECT from the refused ones
    ids = set(tb.connected_ids())
    t.check(not ids & {"tls-it-" + n for n in REFUSALS},
            "the TLS broker's log shows no MQTT session of a refused link", repr(ids))
    expected = [(("plain/k%d" % i).encode(), b"during retries %d" % i) for i in range(k)]
    a_pub.wait_published(30)
    b_sub.wait_for(lambda ms: len(ms) >= k, 30)
    d = rt.Delivery(expected, b_sub.received())
    t.check(k > 0 and not d.missing and d.duplicates == 0,
            "pa -> pb (plain): all %d messages published during the retries arrived" % k,
            d.describe())
    # and the good TLS links still carry traffic after all those failures
    cross(t, a_pub, t_sub, "up/ok/after", 5, "pa -> TLS after the refusals")

    t.section("verify = false: a warning at every connect")
    nv.restart()
    t.check(rt.wait_until(lambda: len(connected_lines(relay, "nv#0")) >= 2, 20),
            "nv#0 connects again after its broker restarted",
            "\n".join(who_lines(relay, "nv#0", ("INFO", "WARN", "ERROR"))))
    nv_all = who_lines(relay, "nv#0", ("INFO", "WARN", "ERROR"))
    for line in nv_all:
        t.note("  " + line)
    conns = len(connected_lines(relay, "nv#0"))
    warns = [l for l in who_lines(relay, "nv#0", ("WARN",))
             if re.search(r"verif", l, re.I)]
    t.check(len(warns) >= conns,
            "nv#0: a WARN about verify = false at every connect (%d connects, %d such "
            "warnings)" % (conns, len(warns)), "\n".join(nv_all))

    relay.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
