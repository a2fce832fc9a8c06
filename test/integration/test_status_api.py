"""GET /, GET /api/v1/status and POST /-/reload on the relay.metrics listener (issue 17).

Brokers A (MQTT 5, the relay logs in with a password that must appear nowhere) and B (MQTT
3.1.1), the relay with relay.metrics on 127.0.0.1 (a loopback listener), routes ab (A -> B, s/a/#)
and ba (B -> A, s/b/#). Asserted:
  1. GET / is relay/io/status.html byte for byte, text/html; charset=utf-8, with
     X-Content-Type-Options: nosniff and a Content-Security-Policy header: the page's own policy
     (which pins its script by hash) plus frame-ancestors 'none'. The API answers
     application/json with Cache-Control: no-store; every documented member is there with its
     type (statustest.SHAPE).
  2. Counts equal the traffic: 30 QoS 1 messages A -> B and 20 B -> A, all arrive; the API's
     received/forwarded equal them and /metrics; once the last second is complete, the 60
     per-second rates add up to the same totals; connections up since their CONNACK, bytes as
     /metrics counts them; the password is in neither the API, the page nor the log.
  3. B SIGKILLed: B#0 not up (state, connections_up 0, relay.healthy false), its last error with
     a time, and the warning in the API's log equals the line in stderr. B restarted: up again,
     1 reconnect.
  4. POST /-/reload on the loopback listener, no token set: the file unchanged -> 200; a route
     added -> 200 and its messages cross; a route naming an unknown broker -> 409 with
     "FILE:LINE: ..." and "keeping the running configuration", the relay keeps running the
     previous file (the added route still crosses, the API still lists it); a change that needs
     a restart (relay.id) -> 409; relay.reload counts all four, the last one failed.
     GET /-/reload -> 405 (Allow: POST), POST /api/v1/status -> 405.
  5. A second relay whose listener is on 0.0.0.0 (not loopback): POST /-/reload -> 403 and
     nothing reloaded. relay.admin_token_file added and SIGHUP: then no token -> 401 with
     WWW-Authenticate: Bearer, a wrong one -> 401, the right one -> 200; the token is never in
     the log or the API.
"""
import os
import re
import signal
import sys
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402
import status_mock  # noqa: E402
import statustest as st  # noqa: E402

PASSWORD = "Pa55-w0rd-that-must-not-show"
TOKEN = "tok-0123456789abcdef-SECRET-zyx"


def page_and_headers(t, port):
    t.section("GET / and the API's headers")
    status, hdr, body = st.request(port, "GET", "/")
    with open(status_mock.PAGE, "rb") as f:
        page = f.read()
    t.check(status == 200 and body == page,
            "GET / is relay/io/status.html byte for byte (%d bytes)" % len(page),
            "status %d, %d bytes" % (status, len(body)))
    meta = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"',
                     page.decode()).group(1)
    want, have = status_mock.csp_hashes(page.decode())
    t.check(hdr.get("content-type") == "text/html; charset=utf-8"
            and hdr.get("x-content-type-options") == "nosniff"
            and hdr.get("content-security-policy") == meta + "; frame-ancestors 'none'"
            and want == have and "'sha256-%s'" % want in hdr["content-security-policy"],
            "text/html; charset=utf-8, nosniff, CSP = the page's policy (script sha256-%s...) "
            "+ frame-ancestors 'none'" % want[:10], "headers %s" % hdr)
    status, hdr, body = st.request(port, "GET", "/api/v1/status")
    t.check(status == 200 and hdr.get("content-type") == "application/json; charset=utf-8"
            and hdr.get("cache-control") == "no-store"
            and hdr.get("x-content-type-options") == "nosniff",
            "the API: application/json; charset=utf-8, Cache-Control: no-store, nosniff",
            "headers %s" % hdr)
    st.check_shape(t, st.status(port), "at start")


def counts(t, a, b, port, relay):
    t.section("counts equal the traffic")
    sub_b = t.client(b, "3.1.1").subscribe("s/a/#", 1)
    sub_a = t.client(a).subscribe("s/b/#", 1)
    pub_a, pub_b = t.client(a), t.client(b, "3.1.1")
    n_ab, n_ba = 30, 20
    for i in range(n_ab):
        pub_a.publish("s/a/%d" % (i % 4), b"ab-%d" % i, 1)
        if i < n_ba:
            pub_b.publish("s/b/%d" % (i % 3), b"ba-%d" % i, 1)
    pub_a.wait_published()
    pub_b.wait_published()
    t.check(sub_b.wait_for(lambda m: len(m) >= n_ab, 30)
            and sub_a.wait_for(lambda m: len(m) >= n_ba, 30),
            "%d messages arrive on B, %d on A" % (n_ab, n_ba),
            "got %d, %d" % (sub_b.count(), sub_a.count()))
    ms = rt.wait_until(lambda: (lambda m: rt.metric(m, "mqtt_relay_messages_forwarded_total",
                                                    route="ab") == n_ab
                                and rt.metric(m, "mqtt_relay_messages_forwarded_total",
                                              route="ba") == n_ba and m)(rt.get_metrics(port)),
                       10, 0.1)
    t.check(ms, "/metrics counts them forwarded")
    time.sleep(1.1)  # the second of the last message is complete: the rates hold it
    s = st.status(port)
    st.check_shape(t, s, "after traffic")
    for name, n in (("ab", n_ab), ("ba", n_ba)):
        r = st.by_name(s["routes"], name)
        t.check(r["received"] == n and r["forwarded"] == n
                and r["received"] == rt.metric(ms, "mqtt_relay_messages_received_total",
                                               route=name)
                and not any(r["dropped"].values()),
                "route %s: received %d, forwarded %d, as /metrics counts, no drops" % (name, n, n),
                "got %s" % {k: r[k] for k in ("received", "forwarded", "dropped")})
        t.check(sum(r["rate"]["in"]) == n and sum(r["rate"]["out"]) == n
                and r["rate"]["interval_seconds"] == 1,
                "route %s: the 60 one-second rates add up to %d in and %d out" % (name, n, n),
                "in %s, out %s" % (r["rate"]["in"][-5:], r["rate"]["out"][-5:]))
    ms = rt.get_metrics(port)
    for bn in ("A", "B"):
        bj = st.by_name(s["brokers"], bn)
        c = bj["conns"][0]
        t.check(bj["connections_up"] == 1 and bj["connections"] == 1 and c["state"] == "up"
                and c["up_since"] and c["state_since"] >= c["up_since"]  # up at its SUBACKs
                and c["url"] == {"A": a.url, "B": b.url}[bn] and c["last_error"] is None
                and c["inflight"] == 0 and c["reconnects"] == 0,
                "broker %s: 1 of 1 up since its CONNACK, its URL, no error" % bn, "got %s" % bj)
        t.check(c["bytes_received"] <= rt.metric(ms, "mqtt_relay_bytes_received_total",
                                                 broker=bn)
                and c["bytes_received"] > 0 and c["bytes_sent"] > 0,
                "broker %s: bytes as /metrics counts them" % bn)
    t.check(st.by_name(s["brokers"], "B")["version"] == "3.1.1" and s["relay"]["healthy"],
            "B is MQTT 3.1.1; relay.healthy")
    _, _, page = st.request(port, "GET", "/")
    _, _, api = st.request(port, "GET", "/api/v1/status")
    t.check(PASSWORD.encode() not in api + page and PASSWORD not in relay.stderr_text(),
            "A's password is in neither the API, the page nor the log")
    return pub_a


def broker_down(t, b, port, relay):
    t.section("B SIGKILLed, then back")
    t0 = time.time()
    b.kill()

    def down():
        s = st.status(port)
        c = st.by_name(s["brokers"], "B")["conns"][0]
        return s if c["state"] != "up" and c["last_error"] else None
    s = rt.wait_until(down, 10, 0.1)
    t.check(s, "B#0 is shown not up, with a last error")
    bj = st.by_name(s["brokers"], "B")
    c = bj["conns"][0]
    at = time.mktime(time.strptime(c["last_error"]["at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    t.check(c["state"] in ("waiting", "connecting") and bj["connections_up"] == 0
            and not s["relay"]["healthy"] and c["up_since"] is None and abs(at - t0) < 5,
            "B#0 %s since %s, connections_up 0, relay.healthy false, error at %s: %r"
            % (c["state"], c["state_since"], c["last_error"]["at"], c["last_error"]["text"]))
    warns = [l for l in s["log"] if l["who"] == "B#0" and l["level"] == "WARN"]
    text = relay.stderr_text()
    t.check(warns and all("WARN  B#0: %s" % w["msg"] in text for w in warns),
            "the API's log holds B#0's warnings as stderr has them (%d): %r"
            % (len(warns), warns[-1]["msg"] if warns else None))
    b.start()
    s = rt.wait_until(lambda: (lambda x: x if st.by_name(x["brokers"], "B")["connections_up"]
                               else None)(st.status(port)), 20, 0.2)
    t.check(s and st.by_name(s["brokers"], "B")["conns"][0]["reconnects"] == 1
            and s["relay"]["healthy"], "B#0 up again: 1 reconnect, relay.healthy")


def reload_loopback(t, a, b, port, relay, pub_a):
    t.section("POST /-/reload on a loopback listener (no token)")
    code, hdr, j = st.post_reload(port)
    t.check(code == 200 and j["ok"] is True
            and j["message"].startswith("configuration reloaded: 2 routes (2 unchanged")
            and hdr.get("cache-control") == "no-store",
            "the file unchanged: 200 %r" % j["message"], "got %d %s" % (code, j))
    routes = relay.routes + [{"name": "added", "from": "A", "to": "B", "filter": "n/#",
                              "qos": 1}]
    with open(relay.conf_path, "w") as f:
        f.write(rt.relay_config_text(relay.relay_cfg, relay.brokers, routes))
    code, _, j = st.post_reload(port)
    t.check(code == 200 and j["ok"] and "1 new" in j["message"],
            "a route added: 200 %r" % j["message"], "got %d %s" % (code, j))
    sub_n = t.client(b, "3.1.1").subscribe("n/#", 1)
    pub_a.publish("n/1", b"added-1", 1)
    t.check(sub_n.wait_for(lambda m: len(m) >= 1, 15), "its messages cross (n/1)")

    t.section("a broken file: 409 with FILE:LINE, the running configuration kept")
    good = rt.relay_config_text(relay.relay_cfg, relay.brokers, routes)
    bad = good.replace('to = "B";\n    filter = "n/#"', 'to = "nowhere";\n    filter = "n/#"')
    t.check(bad != good, "(the bad file names broker \"nowhere\")")
    line = bad.split("\n").index('    to = "nowhere";') + 1
    with open(relay.conf_path, "w") as f:
        f.write(bad)
    code, _, j = st.post_reload(port)
    want = '%s:%d: route "added": unknown broker "nowhere"' % (relay.conf_path, line)
    t.check(code == 409 and j["ok"] is False and j["message"].startswith(want)
            and j["message"].endswith("; keeping the running configuration"),
            "409 %r" % j["message"], "got %d %s, expected it to start with %r"
            % (code, j, want))
    relay.check_alive()
    pub_a.publish("n/2", b"added-2", 1)
    t.check(sub_n.wait_for(lambda m: len(m) >= 2, 15),
            "the previous file keeps running: route added still crosses (n/2)")
    s = st.status(port)
    t.check([r["name"] for r in s["routes"]] == ["ab", "ba", "added"]
            and s["relay"]["reload"]["count"] == 3
            and s["relay"]["reload"]["last"]["ok"] is False
            and s["relay"]["reload"]["last"]["message"] == j["message"],
            "the API lists the running routes and the reload: 3, the last one failed with "
            "that message", "got %s / %s" % ([r["name"] for r in s["routes"]],
                                              s["relay"]["reload"]))
    cfg = dict(relay.relay_cfg, id="another-id")
    with open(relay.conf_path, "w") as f:
        f.write(rt.relay_config_text(cfg, relay.brokers, routes))
    code, _, j = st.post_reload(port)
    t.check(code == 409 and "needs a restart; keeping the running configuration" in j["message"]
            and "relay.id" in j["message"], "relay.id changed: 409 %r" % j["message"])
    with open(relay.conf_path, "w") as f:
        f.write(good)
    code, hdr, _ = st.request(port, "GET", "/-/reload")
    t.check(code == 405 and hdr.get("allow") == "POST", "GET /-/reload: 405, Allow: POST")
    code, hdr, _ = st.request(port, "POST", "/api/v1/status", body=b"")
    t.check(code == 405 and hdr.get("allow") == "GET", "POST /api/v1/status: 405, Allow: GET")
    code, _, _ = st.request(port, "POST", "/-/reload", {"Content-Length": "100000"})
    t.check(code == 413, "POST /-/reload with a 100 kB body: 413")


def reload_remote(t, a, b):
    t.section("a listener on 0.0.0.0: refused without a token, allowed with it")
    port = rt.free_port()
    relay = t.relay(relay={"id": "remote", "metrics": "0.0.0.0:%d" % port},
                    brokers=[{"name": "A", "url": a.url}, {"name": "B", "url": b.url,
                                                           "version": "3.1.1"}],
                    routes=[{"name": "ab2", "from": "A", "to": "B", "filter": "r/#"}],
                    name="remote")
    relay.wait_ready({"A": a, "B": b})
    code, _, j = st.post_reload(port)
    s = st.status(port)
    t.check(code == 403 and j["ok"] is False and "relay.admin_token" in j["message"]
            and s["relay"]["reload"]["count"] == 0,
            "no token set: 403 %r, nothing reloaded" % j["message"], "got %d %s" % (code, j))
    tok = os.path.join(relay.dir, "admin.token")
    with open(tok, "w") as f:
        f.write(TOKEN + "\n")
    os.chmod(tok, 0o600)
    relay.relay_cfg["admin_token_file"] = "admin.token"
    with open(relay.conf_path, "w") as f:
        f.write(rt.relay_config_text(relay.relay_cfg, relay.brokers, relay.routes))
    os.kill(relay.pid, signal.SIGHUP)
    t.check(rt.wait_until(lambda: st.status(port)["relay"]["reload"]["count"] == 1, 10),
            "SIGHUP reloaded the file (relay.reload.count 1)")
    code, hdr, j = st.post_reload(port)
    t.check(code == 401 and j["ok"] is False and hdr.get("www-authenticate", "").startswith(
        "Bearer"), "no token: 401, WWW-Authenticate: Bearer", "got %d %s %s" % (code, hdr, j))
    code, _, j = st.post_reload(port, TOKEN[:-1] + "Y")
    t.check(code == 401, "a wrong token: 401")
    code, _, j = st.post_reload(port, TOKEN)
    t.check(code == 200 and j["ok"], "the token: 200 %r" % j["message"])
    s = st.status(port)
    t.check(s["relay"]["reload"]["count"] == 2, "relay.reload.count 2 (SIGHUP, then POST)")
    _, _, api = st.request(port, "GET", "/api/v1/status")
    t.check(TOKEN not in relay.stderr_text() and TOKEN.encode() not in api
            and "refused: wrong bearer token" in relay.stderr_text(),
            "the refusals are logged, the token never (log, API)")


def run(t):
    a = t.broker("A")
    b = t.broker("B")
    port = rt.free_port()
    routes = [{"name": "ab", "from": "A", "to": "B", "filter": "s/a/#", "qos": 1},
              {"name": "ba", "from": "B", "to": "A", "filter": "s/b/#", "qos": 1}]
    relay = t.relay(relay={"id": "site-a", "metrics": "127.0.0.1:%d" % port},
                    brokers=[{"name": "A", "url": a.url, "username": "relay",
                              "password": PASSWORD, "reconnect": {"min": 100, "max": 500}},
                             {"name": "B", "url": b.url, "version": "3.1.1",
                              "reconnect": {"min": 100, "max": 500}}],
                    routes=routes)
    relay.wait_ready({"A": a, "B": b})
    page_and_headers(t, port)
    pub_a = counts(t, a, b, port, relay)
    broker_down(t, b, port, relay)
    relay.wait_ready({"A": a, "B": b})
    reload_loopback(t, a, b, port, relay, pub_a)
    reload_remote(t, a, b)
    relay.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
