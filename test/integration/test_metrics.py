"""GET /metrics and /healthz (SPEC "Metrics", issue 6): the values equal the traffic sent.

Two Mosquitto brokers A and B, the relay with `relay.metrics = "127.0.0.1:PORT"` and three
routes:
    ra  A -> B  m/a/#                       37 QoS 1 messages
    rb  B -> A  m/b/#                       11 QoS 1 messages
    rc  A -> B  m/c/+/x  topic "c/${1}/x"   5 forwarded, 3 on "m/c//x": the empty level makes
                                            the template produce an invalid topic, so they are
                                            dropped with reason="bad_topic"
Once every forwarded message arrived, /metrics must say exactly that: received and forwarded
per route, dropped{reason} (bad_topic 3 on rc, every other reason 0), the latency histogram's
count = +Inf bucket = forwarded in all (buckets cumulative), inflight 0 and connection_up 1 on
every connection, byte counters at least the topics and payloads that crossed, reconnects 0.
Every metric SPEC names has its # HELP and # TYPE lines; the content type is Prometheus text.

/healthz: 200; B SIGKILLed -> 503 (bounded wait), connection_up{B} 0; B restarted on its port ->
200 again, reconnects_total{B} 1 (A's still 0), and traffic crosses again with the counters
following it. Any other path (but / and /api/v1/status, issue 17) -> 404; other methods are not served (404 or 405); a request that
is not HTTP changes nothing.
"""
import sys

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

SPEC_METRICS = {
    "mqtt_relay_messages_received_total": "counter",
    "mqtt_relay_messages_forwarded_total": "counter",
    "mqtt_relay_messages_dropped_total": "counter",
    "mqtt_relay_inflight": "gauge",
    "mqtt_relay_connection_up": "gauge",
    "mqtt_relay_reconnects_total": "counter",
    "mqtt_relay_bytes_sent_total": "counter",
    "mqtt_relay_bytes_received_total": "counter",
    "mqtt_relay_forward_latency_seconds": "histogram",
}
DROP_REASONS = ("loop", "expired", "too_large", "bad_topic", "qos0_overflow")


def health(port):
    try:
        return rt.http_get(port, "/healthz")[0]
    except OSError as e:
        return "no answer (%s)" % e


def run(t):
    a = t.broker("A", log_all=False)
    b = t.broker("B", log_all=False)
    mport = rt.free_port()
    routes = [
        {"name": "ra", "from": "A", "to": "B", "filter": "m/a/#", "qos": 1},
        {"name": "rb", "from": "B", "to": "A", "filter": "m/b/#", "qos": 1},
        {"name": "rc", "from": "A", "to": "B", "filter": "m/c/+/x", "qos": 1,
         "topic": "c/${1}/x"},
    ]
    rec = {"min": 100, "max": 1000}
    relay = t.relay(relay={"id": "mx", "metrics": "127.0.0.1:%d" % mport},
                    brokers=[{"name": "A", "url": a.url, "reconnect": rec},
                             {"name": "B", "url": b.url, "reconnect": rec}],
                    routes=routes)
    relay.wait_ready({"A": a, "B": b})

    t.section("known traffic")
    sub_b = t.client(b).subscribe("m/a/#", 1).subscribe("c/#", 1)
    sub_a = t.client(a).subscribe("m/b/#", 1)
    pub_a = t.client(a)
    pub_b = t.client(b)
    in_a = 0   # topic + payload bytes the relay takes from A
    in_b = 0
    out_b = 0  # topic + payload bytes it forwards to B
    out_a = 0
    for i in range(37):
        topic, payload = "m/a/%d" % i, b"a" * (10 * i + 1)
        pub_a.publish(topic, payload, 1)
        in_a += len(topic) + len(payload)
        out_b += len(topic) + len(payload)
    for i in range(11):
        topic, payload = "m/b/%d" % i, b"b" * (100 + i)
        pub_b.publish(topic, payload, 1)
        in_b += len(topic) + len(payload)
        out_a += len(topic) + len(payload)
    for i in range(5):
        topic, payload = "m/c/k%d/x" % i, b"c%d" % i
        pub_a.publish(topic, payload, 1)
        in_a += len(topic) + len(payload)
        out_b += len("c/k%d/x" % i) + len(payload)
    for i in range(3):
        topic, payload = "m/c//x", b"bad%d" % i
        pub_a.publish(topic, payload, 1)
        in_a += len(topic) + len(payload)
    pub_a.wait_published()
    pub_b.wait_published()
    ok = sub_b.wait_for(lambda ms: len(ms) >= 42, 30) and sub_a.wait_for(lambda ms: len(ms) >= 11,
                                                                        30)
    t.check(ok, "42 messages arrive on B, 11 on A (got %d, %d)" % (sub_b.count(),
                                                                    sub_a.count()))
    t.check(sorted(m.topic for m in sub_b.received() if m.topic.startswith(b"c/"))
            == [b"c/k%d/x" % i for i in range(5)], "rc's template: c/k0/x .. c/k4/x")

    def settled():
        ms = rt.get_metrics(mport)
        return (rt.metric(ms, "mqtt_relay_messages_forwarded_total") == 53
                and rt.metric(ms, "mqtt_relay_inflight") == 0) and ms
    ms = rt.wait_until(settled, 10, 0.1) or rt.get_metrics(mport)

    status, ctype, body = rt.http_get(mport, "/metrics")
    t.check(status == 200 and ctype.startswith("text/plain"),
            "GET /metrics: 200, %s" % ctype)
    for name, typ in SPEC_METRICS.items():
        t.check("# TYPE %s %s" % (name, typ) in body and "# HELP %s " % name in body,
                "# HELP and # TYPE %s %s" % (name, typ))

    want = {"ra": (37, 37, "A"), "rb": (11, 11, "B"), "rc": (8, 5, "A")}
    for route, (received, forwarded, src) in want.items():
        v = rt.metric(ms, "mqtt_relay_messages_received_total", route=route)
        t.check(v == received and rt.has_metric(ms, "mqtt_relay_messages_received_total",
                                                route=route, broker=src),
                "received_total{route=%s,broker=%s} = %d" % (route, src, received),
                "got %s" % v)
        v = rt.metric(ms, "mqtt_relay_messages_forwarded_total", route=route)
        t.check(v == forwarded, "forwarded_total{route=%s} = %d" % (route, forwarded),
                "got %s" % v)
        for reason in DROP_REASONS:
            v = rt.metric(ms, "mqtt_relay_messages_dropped_total", route=route, reason=reason)
            exp = 3 if (route, reason) == ("rc", "bad_topic") else 0
            t.check(rt.has_metric(ms, "mqtt_relay_messages_dropped_total", route=route,
                                  reason=reason) and v == exp,
                    "dropped_total{route=%s,reason=%s} = %d" % (route, reason, exp),
                    "got %s" % v)
    t.check(rt.metric(ms, "mqtt_relay_messages_dropped_total") == 3,
            "3 drops in all, every one counted by reason")

    count = rt.metric(ms, "mqtt_relay_forward_latency_seconds_count")
    inf = rt.metric(ms, "mqtt_relay_forward_latency_seconds_bucket", le="+Inf")
    buckets = sorted(((float(dict(ls)["le"]), v) for (n, ls), v in ms.items()
                      if n == "mqtt_relay_forward_latency_seconds_bucket"), key=lambda x: x[0])
    t.check(count == inf == 53, "latency histogram: _count = +Inf bucket = 53 forwarded (%s, %s)"
            % (count, inf))
    t.check(all(buckets[i][1] <= buckets[i + 1][1] for i in range(len(buckets) - 1))
            and len(buckets) >= 5, "latency buckets are cumulative (%d buckets)" % len(buckets))
    t.check(rt.metric(ms, "mqtt_relay_forward_latency_seconds_sum") > 0, "latency _sum > 0")

    for br in ("A", "B"):
        t.check(rt.metric(ms, "mqtt_relay_connection_up", broker=br, conn="0") == 1,
                "connection_up{broker=%s,conn=0} = 1" % br)
        t.check(rt.has_metric(ms, "mqtt_relay_inflight", broker=br, conn="0")
                and rt.metric(ms, "mqtt_relay_inflight", broker=br) == 0,
                "inflight{broker=%s} = 0 at rest" % br)
        t.check(rt.metric(ms, "mqtt_relay_reconnects_total", broker=br) == 0,
                "reconnects_total{broker=%s} = 0" % br)
    for br, rx, tx in (("A", in_a, out_a), ("B", in_b, out_b)):
        got_rx = rt.metric(ms, "mqtt_relay_bytes_received_total", broker=br)
        got_tx = rt.metric(ms, "mqtt_relay_bytes_sent_total", broker=br)
        t.check(got_rx >= rx, "bytes_received_total{broker=%s} = %d, at least the %d bytes of "
                "topics and payloads taken from it" % (br, got_rx, rx))
        t.check(got_tx >= tx, "bytes_sent_total{broker=%s} = %d, at least the %d bytes of "
                "topics and payloads forwarded to it" % (br, got_tx, tx))

    t.section("/healthz and other paths")
    t.check(health(mport) == 200, "GET /healthz: 200 with both brokers up")
    # "/" is the status page (issue 17: test_status_page.py, test_status_api.py)
    for path in ("/metric", "/metricsx", "/healthz/x", "/favicon.ico", "/metrics/../x"):
        st = rt.http_get(mport, path)[0]
        t.check(st == 404, "GET %s: 404 (got %s)" % (path, st))
    for method in ("POST", "PUT", "DELETE"):
        st = rt.http_get(mport, "/metrics", method=method)[0]
        t.check(st in (404, 405), "%s /metrics: %s (not served)" % (method, st))
    import socket
    with socket.create_connection(("127.0.0.1", mport), timeout=5) as s:
        s.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        try:
            s.recv(100)
        except OSError:
            pass
    relay.check_alive()
    t.check(health(mport) == 200, "a garbage request changes nothing: /healthz still 200")

    b.kill()
    t.note("SIGKILL broker B")
    ok = rt.wait_until(lambda: health(mport) == 503, 15, 0.1)
    t.check(ok, "GET /healthz: 503 once B is gone (got %s)" % health(mport))
    ms = rt.get_metrics(mport)
    t.check(rt.metric(ms, "mqtt_relay_connection_up", broker="B") == 0,
            "connection_up{broker=B} = 0")
    relay.check_alive()
    n = sub_b.connects
    b.start()
    t.note("B restarted on port %d" % b.port)
    ok = rt.wait_until(lambda: health(mport) == 200, 30, 0.1)
    t.check(ok, "GET /healthz: 200 again once the relay is back on B (got %s)" % health(mport))
    ms = rt.get_metrics(mport)
    t.check(rt.metric(ms, "mqtt_relay_reconnects_total", broker="B") == 1,
            "reconnects_total{broker=B} = 1 (got %s)"
            % rt.metric(ms, "mqtt_relay_reconnects_total", broker="B"))
    t.check(rt.metric(ms, "mqtt_relay_reconnects_total", broker="A") == 0,
            "reconnects_total{broker=A} still 0")
    t.check(rt.metric(ms, "mqtt_relay_connection_up", broker="B") == 1,
            "connection_up{broker=B} = 1")

    t.check(sub_b.wait_reconnected(n, 30), "the subscriber on B is back")
    relay.wait_ready({"A": a, "B": b})
    sub_b.clear()
    for i in range(2):
        pub_a.publish("m/a/after/%d" % i, b"after", 1)
    pub_a.wait_published()
    t.check(sub_b.wait_for(lambda ms: len(ms) >= 2, 30), "2 more on ra cross after B's restart")
    ok = rt.wait_until(lambda: rt.metric(rt.get_metrics(mport),
                                         "mqtt_relay_messages_forwarded_total",
                                         route="ra") == 39, 10, 0.1)
    ms = rt.get_metrics(mport)
    t.check(ok and rt.metric(ms, "mqtt_relay_messages_received_total", route="ra") == 39,
            "received and forwarded{route=ra} = 39")
    t.check(rt.metric(ms, "mqtt_relay_forward_latency_seconds_count") == 55,
            "latency _count = 55")
    relay.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
