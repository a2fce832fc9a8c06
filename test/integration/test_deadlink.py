"""Dead-link detection and the source address (issue 13, item 5).

Four brokers, each behind its own black hole (blackhole.BlackHole: a proxy whose port can be
made to drop every packet at the ingress of lo, so that the peer stops answering without
closing, as when a NAT forgets the connection or a cable is pulled), plus one reached directly.
All four holes open at the same moment; each link is configured differently:

  far1  keepalive 30 (MQTT notices nothing for 52 s), tcp_keepalive 2, tcp_user_timeout 0:
        an idle link, noticed by TCP keepalive probes (2 s + 3 x 1 s)
  far2  keepalive 30, tcp_keepalive 0, tcp_user_timeout 3000, a QoS 1 message sent into the
        hole: noticed by the user timeout (3 s of unacknowledged data)
  far3  keepalive 6 and the defaults (tcp_keepalive = keepalive / 2, tcp_user_timeout =
        keepalive x 750 ms): noticed by TCP within about keepalive x 1.5 (9 s), before the
        MQTT keepalive would (no PINGRESP: 10.5 s)
  far4  keepalive 4, tcp_keepalive 0, tcp_user_timeout 0: the control, only MQTT notices
        ("no PINGRESP within 4 s")

  dead     each link's loss is logged with its reason within its bound (the times are printed;
           the bounds asserted are generous); far1-far3 say the broker stopped answering (TCP),
           far4 says no PINGRESP; then the holes close again, every link reconnects and the
           message sent into far2's hole is delivered.
  bind     bind_address 127.0.0.2: Mosquitto logs the relay's connection from 127.0.0.2; an
           address that is not this machine's (192.0.2.1) and one of the wrong family (::1 for
           an IPv4 broker) are said clearly and retried.

Needs root (tc filters on lo): exits 77 otherwise.
"""
import calendar
import re
import sys
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402
import blackhole  # noqa: E402

LOST = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z WARN  (far\d)#0: "
                  r"(?:connection lost \((.*)\)|(no PINGRESP[^,]*)), retry in")


def when(line):
    m = LOST.match(line)
    return calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + int(m.group(2)) / 1e3


def losses(r):
    out = {}
    for l in r.log_lines():
        m = LOST.match(l)
        if m and m.group(3) not in out:
            out[m.group(3)] = (when(l), m.group(4) or m.group(5))
    return out


def run_dead(t):
    t.section("dead: four links into black holes, each noticed by what it is configured with")
    near = t.broker("near")
    fars, holes = {}, {}
    for n in ("far1", "far2", "far3", "far4"):
        fars[n] = t.broker(n)
        holes[n] = blackhole.BlackHole(t, fars[n].port, name="hole-" + n).start()
    conf = {
        "far1": {"keepalive": 30, "tcp_keepalive": 2, "tcp_user_timeout": 0},
        "far2": {"keepalive": 30, "tcp_keepalive": 0, "tcp_user_timeout": 3000},
        "far3": {"keepalive": 6},
        "far4": {"keepalive": 4, "tcp_keepalive": 0, "tcp_user_timeout": 0},
    }
    brokers = [{"name": "near", "url": near.url}]
    for n, c in conf.items():
        b = {"name": n, "url": holes[n].url, "reconnect": {"min": 200, "max": 1000}}
        b.update(c)
        brokers.append(b)
    r = t.relay(brokers=brokers, routes=[{"from": "near", "to": "far2", "filter": "d/#"}])
    t.check(rt.wait_until(lambda: all(any(" %s#0: connected to" % n in l for l in r.log_lines())
                                      for n in conf), 15), "the four links are up")
    sub = t.client(fars["far2"], client_id="sub-far2")
    sub.subscribe("d/#", qos=1)
    pub = t.client(near, client_id="pub-near")
    time.sleep(1.0)
    t0 = time.time()
    for h in holes.values():
        h.drop()
    pub.publish("d/into-the-hole", b"sent while far2 was a black hole", qos=1)
    bounds = {"far1": 10.0, "far2": 10.0, "far3": 14.0, "far4": 14.0}
    t.check(rt.wait_until(lambda: set(losses(r)) == set(conf), max(bounds.values()) + 5),
            "every link's loss was noticed", "\n".join(r.log_lines()[-10:]))
    lost = losses(r)
    for n in sorted(conf):
        t.say("   %s: lost %.1f s after the hole opened: %s" % (n, lost[n][0] - t0, lost[n][1]))
    tcp = "the broker stopped answering (TCP keepalive or user timeout)"
    for n in ("far1", "far2", "far3"):
        t.check(tcp in lost[n][1] and lost[n][0] - t0 < bounds[n],
                "%s: noticed by TCP within %.0f s" % (n, bounds[n]))
    t.check("no PINGRESP" in lost["far4"][1], "far4 (TCP options off): only MQTT noticed")
    for h in holes.values():
        h.restore()
    t.check(rt.wait_until(lambda: all(sum(1 for l in r.log_lines() if " %s#0: connected to" % n
                                          in l) >= 2 for n in conf), 20),
            "the holes closed: every link reconnected")
    t.check(sub.wait_for(lambda m: any(x.payload == b"sent while far2 was a black hole"
                                       for x in m), 20),
            "the message sent into far2's hole was delivered after the reconnect")
    pub.stop()
    sub.stop()
    r.stop()


def run_bind(t):
    t.section("bind: the source address")
    b = t.broker("bound")
    r = t.relay(brokers=[
        {"name": "bound", "url": b.url, "bind_address": "127.0.0.2"},
        {"name": "nothere", "url": b.url, "bind_address": "192.0.2.1", "client_id": "x-nothere",
         "reconnect": {"min": 300, "max": 600}},
        {"name": "family", "url": b.url, "bind_address": "::1", "client_id": "x-family",
         "reconnect": {"min": 300, "max": 600}},
    ], routes=[{"from": "bound", "to": "nothere", "filter": "a/#"},
               {"from": "bound", "to": "family", "filter": "b/#"}], name="relay-bind")
    t.check(rt.wait_until(lambda: any("from 127.0.0.2:" in l and "as itest-bound" in l
                                      for l in b.log_lines()), 15),
            "Mosquitto logs the relay's connection from 127.0.0.2",
            "\n".join(b.log_lines()[-5:]))
    for n, text in (("nothere", "192.0.2.1"), ("family", "::1")):
        t.check(rt.wait_until(lambda: len([l for l in r.log_lines() if " %s#0: " % n in l and
                                           text in l and "retry in" in l]) >= 2, 10),
                "%s: bind_address %s said clearly, retried" % (n, text),
                "\n".join(r.log_lines()[-6:]))
        t.note([l for l in r.log_lines() if " %s#0: " % n in l and text in l][0])
    r.stop()


def run(t):
    ok, why = blackhole.available()
    if not ok:
        print("SKIP: %s" % why)
        sys.exit(rt.SKIP)
    run_bind(t)
    run_dead(t)


if __name__ == "__main__":
    rt.main(run, __doc__)
