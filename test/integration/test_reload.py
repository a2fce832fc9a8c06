"""SIGHUP reload (SPEC "SIGHUP", issue 6): routes that changed are re-subscribed without dropping
unchanged connections; an invalid new file is logged and the old one kept.

Brokers A (MQTT 5) and B (MQTT 3.1.1, so both kinds of source link are reloaded), the relay with
/metrics. Routes of the first file:
    keep     A -> B  k/#                       unchanged throughout
    back     B -> A  b/#                       unchanged throughout
    gone     A -> B  g/#                       removed by the second file
    gone311  B -> A  h/#                       removed by the second file
    tpl      A -> B  t/#  topic "old/${#}"     the second file makes it "new/${#}"
The second file adds
    added    A -> B  n/#
    added311 B -> A  m/#
Asserted, step by step (every wait bounded, the process checked alive after each SIGHUP):
  1. SIGHUP with the file unchanged: no SUBSCRIBE or UNSUBSCRIBE reaches the brokers, traffic
     crosses.
  2. SIGHUP with the second file: the brokers' logs show SUBSCRIBE n/# and m/#, UNSUBSCRIBE g/#
     and h/# from the relay's existing sessions; messages on n/ and m/ cross; messages on g/ and
     h/ no longer do (checked behind a fence: a later message on an unchanged route from the
     same publisher arrives first); t/x arrives as new/x and no longer as old/x; no new
     connection from the relay in either broker's log (same client sessions), reconnects_total
     unchanged (0), the unchanged routes' counters not reset.
  3. Broken files: a syntax error, an unknown key, a route naming an unknown broker: each is
     logged as an ERROR naming FILE:LINE (the exact line), the process keeps running, and the
     second file's routes still work (and the first file's removed ones stay removed); no
     SUBSCRIBE/UNSUBSCRIBE, no reconnect.
  4. A change that needs a restart (relay.id) is refused with a log line, nothing changes.
  5. Back to the first file: g/# and h/# subscribed again and crossing, n/# and m/# gone.
  6. SIGTERM: exit 0.
"""
import copy
import os
import re
import signal
import sys
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402


def routes_v1():
    return [
        {"name": "keep", "from": "A", "to": "B", "filter": "k/#", "qos": 1},
        {"name": "back", "from": "B", "to": "A", "filter": "b/#", "qos": 1},
        {"name": "gone", "from": "A", "to": "B", "filter": "g/#", "qos": 1},
        {"name": "gone311", "from": "B", "to": "A", "filter": "h/#", "qos": 1},
        {"name": "tpl", "from": "A", "to": "B", "filter": "t/#", "qos": 1,
         "topic": "old/${#}"},
    ]


def routes_v2():
    rs = [r for r in routes_v1() if not r["name"].startswith("gone")]
    for r in rs:
        if r["name"] == "tpl":
            r["topic"] = "new/${#}"
    rs += [{"name": "added", "from": "A", "to": "B", "filter": "n/#", "qos": 1},
           {"name": "added311", "from": "B", "to": "A", "filter": "m/#", "qos": 1}]
    return rs


class Ctx:
    pass


def unsubscriptions(broker, cid):
    """Filters cid unsubscribed in the current run: "Received UNSUBSCRIBE from CID" followed by
    one tab-indented line per filter."""
    out = []
    lines = broker.log_lines()
    for i, l in enumerate(lines):
        if l == "Received UNSUBSCRIBE from %s" % cid:
            for nxt in lines[i + 1:]:
                if not nxt.startswith("\t"):
                    break
                out.append(nxt.strip())
    return out


def subscribed(broker, cid):
    return [s[2] for s in broker.subscriptions() if s[0] == cid]


def write_conf(x, relay_cfg, brokers, routes, extra_lines=None):
    """Writes the relay's file; extra_lines: (marker text in the file, line to put after it).
    Returns the text."""
    text = rt.relay_config_text(relay_cfg, brokers, routes)
    if extra_lines:
        lines = text.split("\n")
        for marker, new in extra_lines:
            i = next(i for i, l in enumerate(lines) if marker in l)
            lines.insert(i + 1, new)
        text = "\n".join(lines)
    with open(x.relay.conf_path, "w") as f:
        f.write(text)
    return text


def line_of(text, needle):
    return next(i + 1 for i, l in enumerate(text.split("\n")) if needle in l)


def hup(t, x):
    n = len(x.relay.log_lines())
    t.note("SIGHUP")
    os.kill(x.relay.pid, signal.SIGHUP)
    return n


def wait_log(t, x, start, pred, timeout=15):
    """Bounded wait for a relay log line after index start that satisfies pred; returns it."""
    found = [None]

    def ok():
        x.relay.check_alive()
        for l in x.relay.log_lines()[start:]:
            if pred(l):
                found[0] = l
                return True
        return False
    rt.wait_until(ok, timeout, 0.05)
    return found[0]


def crosses(t, x, pub, sub, topic, want_topic, timeout=15):
    """Publishes one message on topic and waits for it at sub as want_topic."""
    x.k += 1
    payload = b"m%d" % x.k
    pub.publish(topic, payload, 1)
    return sub.wait_for(lambda ms: any(m.topic == want_topic.encode() and m.payload == payload
                                       for m in ms), timeout)


def blocked(t, x, pub, sub, topic, fence_topic, not_topics, timeout=15):
    """Publishes on topic, then on fence_topic (an unchanged route from the same publisher to
    the same destination); once the fence arrived, asserts nothing arrived on not_topics.
    Returns (fence arrived, what arrived that should not have)."""
    x.k += 1
    payload = b"m%d" % x.k
    pub.publish(topic, payload, 1)
    pub.publish(fence_topic, b"fence-" + payload, 1)
    ok = sub.wait_for(lambda ms: any(m.payload == b"fence-" + payload for m in ms), timeout)
    time.sleep(0.3)
    bad = [m.topic for m in sub.received() if m.payload == payload
           and m.topic.decode() in not_topics]
    return ok, bad


def connections_of(x):
    return {n: x.brokers[n].connected_ids().count(x.relay.client_ids(n)[0]) for n in ("A", "B")}


def check_v2_routes(t, x, what):
    t.check(crosses(t, x, x.pub_a, x.sub_b, "n/1", "n/1"), "%s: n/1 crosses A -> B (added)"
            % what)
    t.check(crosses(t, x, x.pub_b, x.sub_a, "m/1", "m/1"), "%s: m/1 crosses B -> A (added, "
            "3.1.1 source)" % what)
    t.check(crosses(t, x, x.pub_a, x.sub_b, "t/x", "new/x"), "%s: t/x arrives as new/x" % what)
    ok, bad = blocked(t, x, x.pub_a, x.sub_b, "t/y", "k/fence", ["old/y"])
    t.check(ok and not bad, "%s: and no longer as old/y" % what, repr(bad))
    ok, bad = blocked(t, x, x.pub_a, x.sub_b, "g/1", "k/fence", ["g/1"])
    t.check(ok and not bad, "%s: g/1 no longer crosses (removed route)" % what, repr(bad))
    ok, bad = blocked(t, x, x.pub_b, x.sub_a, "h/1", "b/fence", ["h/1"])
    t.check(ok and not bad, "%s: h/1 no longer crosses (removed route, 3.1.1 source)" % what,
            repr(bad))
    t.check(crosses(t, x, x.pub_a, x.sub_b, "k/1", "k/1")
            and crosses(t, x, x.pub_b, x.sub_a, "b/1", "b/1"),
            "%s: the unchanged routes keep crossing" % what)


def check_untouched(t, x, what, subs_before, unsubs_before):
    t.check(connections_of(x) == {"A": 1, "B": 1},
            "%s: no new connection from the relay in the brokers' logs (same sessions)" % what,
            repr(connections_of(x)))
    ms = rt.get_metrics(x.mport)
    t.check(rt.metric(ms, "mqtt_relay_reconnects_total") == 0,
            "%s: reconnects_total still 0" % what)
    for n in ("A", "B"):
        cid = x.relay.client_ids(n)[0]
        t.check(subscribed(x.brokers[n], cid) == subs_before[n]
                and unsubscriptions(x.brokers[n], cid) == unsubs_before[n],
                "%s: no SUBSCRIBE or UNSUBSCRIBE on %s" % (what, n),
                "subscriptions %s (before %s), unsubscriptions %s (before %s)"
                % (subscribed(x.brokers[n], cid), subs_before[n],
                   unsubscriptions(x.brokers[n], cid), unsubs_before[n]))


def snapshot(x):
    subs = {n: subscribed(x.brokers[n], x.relay.client_ids(n)[0]) for n in ("A", "B")}
    unsubs = {n: unsubscriptions(x.brokers[n], x.relay.client_ids(n)[0]) for n in ("A", "B")}
    return subs, unsubs


def run(t):
    x = Ctx()
    x.k = 0
    a = t.broker("A")
    b = t.broker("B")
    x.brokers = {"A": a, "B": b}
    x.mport = rt.free_port()
    x.relay_cfg = {"id": "rl", "log_level": "info", "drain_timeout": 2000,
                   "metrics": "127.0.0.1:%d" % x.mport}
    x.broker_cfg = [{"name": "A", "url": a.url, "version": "5"},
                    {"name": "B", "url": b.url, "version": "3.1.1"}]
    x.relay = rt.Relay(t, x.relay_cfg, x.broker_cfg, routes_v1(), "relay").start()
    x.relay.wait_ready({"A": a, "B": b})
    x.sub_b = t.client(b).subscribe("#", 1)
    x.sub_a = t.client(a).subscribe("#", 1)
    x.pub_a = t.client(a)
    x.pub_b = t.client(b, "3.1.1")
    conf = x.relay.conf_path
    cids = {n: x.relay.client_ids(n)[0] for n in ("A", "B")}

    t.section("the first file")
    t.check(crosses(t, x, x.pub_a, x.sub_b, "g/0", "g/0")
            and crosses(t, x, x.pub_b, x.sub_a, "h/0", "h/0")
            and crosses(t, x, x.pub_a, x.sub_b, "t/x", "old/x")
            and crosses(t, x, x.pub_a, x.sub_b, "k/0", "k/0")
            and crosses(t, x, x.pub_b, x.sub_a, "b/0", "b/0"),
            "g/, h/, k/, b/ cross; t/x arrives as old/x")
    t.check(not crosses(t, x, x.pub_a, x.sub_b, "n/0", "n/0", 1.0),
            "n/0 does not cross (no such route yet)")

    t.section("1. SIGHUP, the file unchanged")
    subs, unsubs = snapshot(x)
    start = hup(t, x)
    line = wait_log(t, x, start, lambda l: "reload" in l.lower() and "SIGHUP" not in l)
    t.check(line is not None, "the relay logs the reload: %s" % line)
    t.check(crosses(t, x, x.pub_a, x.sub_b, "k/1", "k/1"), "traffic crosses")
    x.relay.check_alive()
    check_untouched(t, x, "unchanged file", subs, unsubs)
    counts = rt.get_metrics(x.mport)

    t.section("2. SIGHUP with routes added, removed and changed")
    write_conf(x, x.relay_cfg, x.broker_cfg, routes_v2())
    start = hup(t, x)
    ok = rt.wait_until(lambda: x.relay.check_alive() or (
        "n/#" in subscribed(a, cids["A"]) and "m/#" in subscribed(b, cids["B"])
        and "g/#" in unsubscriptions(a, cids["A"]) and "h/#" in unsubscriptions(b, cids["B"])),
        20, 0.1)
    t.check(ok, "the brokers' logs: SUBSCRIBE n/# (A) and m/# (B), UNSUBSCRIBE g/# (A) and h/# "
            "(B) from the relay's sessions",
            "A subscriptions %s unsubscriptions %s; B subscriptions %s unsubscriptions %s"
            % (subscribed(a, cids["A"]), unsubscriptions(a, cids["A"]),
               subscribed(b, cids["B"]), unsubscriptions(b, cids["B"])))
    line = wait_log(t, x, start, lambda l: "reloaded" in l)
    t.note("relay: %s" % line)
    check_v2_routes(t, x, "after the reload")
    t.check(connections_of(x) == {"A": 1, "B": 1},
            "no new connection from the relay in either broker's log (same client sessions)",
            repr(connections_of(x)))
    ms = rt.get_metrics(x.mport)
    t.check(rt.metric(ms, "mqtt_relay_reconnects_total") == 0, "reconnects_total still 0")
    for route in ("keep", "back"):
        before = rt.metric(counts, "mqtt_relay_messages_forwarded_total", route=route)
        now = rt.metric(ms, "mqtt_relay_messages_forwarded_total", route=route)
        t.check(now >= before > 0, "forwarded_total{route=%s} not reset (%d, then %d)"
                % (route, before, now))
    t.check(rt.has_metric(ms, "mqtt_relay_messages_received_total", route="added")
            and not rt.has_metric(ms, "mqtt_relay_messages_received_total", route="gone"),
            "/metrics lists the new routes and no longer the removed ones")

    t.section("3. broken files: logged with FILE:LINE, the running configuration kept")
    good = routes_v2()
    cases = [
        ("a syntax error", [('name = "keep"', "    retain = = \"keep\";")], "= ="),
        ("an unknown key", [('name = "added"', '    colour = "blue";')], "colour"),
        ("a route naming an unknown broker", [], None),
    ]
    for what, extra, needle in cases:
        rs = copy.deepcopy(good)
        if needle is None:
            rs[-1]["to"] = "nowhere"
            needle = '"nowhere"'
        subs, unsubs = snapshot(x)
        text = write_conf(x, x.relay_cfg, x.broker_cfg, rs, extra)
        want_line = line_of(text, needle)
        start = hup(t, x)
        line = wait_log(t, x, start, lambda l: " ERROR " in l)
        x.relay.check_alive()
        m = re.search(re.escape(conf) + r":(\d+)", line or "") or re.search(
            re.escape(os.path.basename(conf)) + r":(\d+)", line or "")
        t.check(m is not None and int(m.group(1)) == want_line,
                "%s: logged as an ERROR naming %s:%d" % (what, os.path.basename(conf),
                                                         want_line),
                "the relay said: %s" % (line or x.relay.log_lines()[start:]))
        t.note(line)
        time.sleep(0.5)
        t.check(x.relay.running(), "%s: the process keeps running" % what)
        check_v2_routes(t, x, what)
        check_untouched(t, x, what, subs, unsubs)

    t.section("4. a change that needs a restart")
    subs, unsubs = snapshot(x)
    cfg = dict(x.relay_cfg, id="rl-other")
    write_conf(x, cfg, x.broker_cfg, good)
    start = hup(t, x)
    line = wait_log(t, x, start, lambda l: " ERROR " in l or " WARN " in l)
    t.check(line is not None and "restart" in line, "relay.id changed: refused, said so: %s"
            % line)
    check_v2_routes(t, x, "restart-only change refused")
    check_untouched(t, x, "restart-only change refused", subs, unsubs)

    t.section("5. back to the first file")
    write_conf(x, x.relay_cfg, x.broker_cfg, routes_v1())
    hup(t, x)
    ok = rt.wait_until(lambda: x.relay.check_alive() or (
        subscribed(a, cids["A"]).count("g/#") == 2 and subscribed(b, cids["B"]).count("h/#") == 2
        and "n/#" in unsubscriptions(a, cids["A"]) and "m/#" in unsubscriptions(b, cids["B"])),
        20, 0.1)
    t.check(ok, "SUBSCRIBE g/# and h/# again, UNSUBSCRIBE n/# and m/#")
    t.check(crosses(t, x, x.pub_a, x.sub_b, "g/2", "g/2")
            and crosses(t, x, x.pub_b, x.sub_a, "h/2", "h/2")
            and crosses(t, x, x.pub_a, x.sub_b, "t/z", "old/z"),
            "g/ and h/ cross again, t/z arrives as old/z")
    ok, bad = blocked(t, x, x.pub_a, x.sub_b, "n/2", "k/fence", ["n/2"])
    t.check(ok and not bad, "n/2 no longer crosses", repr(bad))
    t.check(connections_of(x) == {"A": 1, "B": 1}, "still the first connections",
            repr(connections_of(x)))

    t.section("6. SIGTERM")
    x.relay.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
