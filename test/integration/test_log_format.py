"""relay.log_format = "json" and journald's priority prefixes (issue 17).

1. json: brokers A and B (Mosquitto) and R, a broker that refuses every CONNECT with CONNACK
   0x87 (not authorized); routes ab (A -> B) and drop (A -> B, filter d/+, topic "${1}": a
   message on "d/" maps to an empty topic and is dropped as bad_topic). The relay runs, a message
   is dropped, B is SIGKILLed, a broken file is reloaded (SIGHUP), the relay stops. Every line
   of stderr is one JSON object with ts (RFC 3339), level, who and msg; a connection's lines
   have broker and conn; R's refusal has reason_code 135; the drop has route and reason and no
   broker; the reload's ERROR names FILE:LINE. $JOURNAL_STREAM is set to another stream's
   device and inode (a parent's journal): no prefixes.
2. journald: $JOURNAL_STREAM names the relay's stderr (its device and inode), as systemd sets
   it: in the text format every line starts with the syslog priority of its level ("<6>" INFO,
   "<4>" WARN, "<3>" ERROR); in the json format "<N>" and then the JSON object.
"""
import json
import os
import re
import signal
import socket
import sys
import threading

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LEVELS = {"ERROR": "3", "WARN": "4", "INFO": "6", "DEBUG": "7"}


class RefusingBroker:
    """Answers every CONNECT with an MQTT 5 CONNACK carrying reason code 0x87, then closes."""

    def __init__(self, t):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.refused = 0
        self.th = threading.Thread(target=self.serve, daemon=True)
        self.th.start()
        t._register(self)

    @property
    def url(self):
        return "mqtt://127.0.0.1:%d" % self.port

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                c.settimeout(5)
                if c.recv(4096):
                    c.sendall(bytes([0x20, 3, 0, 0x87, 0]))
                    self.refused += 1
            except OSError:
                pass
            finally:
                c.close()

    def stop(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def lines_of(relay):
    return [l for l in relay.log_lines(current_only=True) if l]


def prepare_stderr(relay):
    """Creates the relay's stderr file before it starts (relaytest appends to it): its device
    and inode are what systemd would put in $JOURNAL_STREAM."""
    open(relay.stderr_path, "ab").close()
    s = os.stat(relay.stderr_path)
    return "%d:%d" % (s.st_dev, s.st_ino)


def json_format(t, a, b):
    t.section("log_format = json")
    r = RefusingBroker(t)
    rec = {"min": 100, "max": 300}
    relay = t.relay(relay={"id": "site-j", "log_format": "json"},
                    brokers=[{"name": "A", "url": a.url, "reconnect": rec},
                             {"name": "B", "url": b.url, "reconnect": rec},
                             {"name": "R", "url": r.url, "reconnect": rec}],
                    routes=[{"name": "ab", "from": "A", "to": "B", "filter": "s/#"},
                            {"name": "drop", "from": "A", "to": "B", "filter": "d/+",
                             "topic": "${1}"}],
                    name="json", start=False)
    other = os.path.join(t.tmp, "another-stream")  # a parent's journal, not our stderr
    open(other, "w").close()
    s = os.stat(other)
    relay.start(env={"JOURNAL_STREAM": "%d:%d" % (s.st_dev, s.st_ino)})
    relay.wait_ready({"A": a, "B": b})
    t.check(rt.wait_until(lambda: r.refused >= 2, 10), "R refused the relay's CONNECT (0x87)")
    pub = t.client(a)
    pub.publish("d/", b"x", 1)
    pub.wait_published()
    b.kill()
    t.check(rt.wait_until(lambda: any('"who":"B#0"' in l and '"WARN"' in l
                                      for l in lines_of(relay)), 10), "a warning for B#0")
    good = relay.text
    bad = good.replace('filter = "s/#";', 'filter = "s/#";\n    colour = "red";')
    line = bad.split("\n").index('    colour = "red";') + 1
    with open(relay.conf_path, "w") as f:
        f.write(bad)
    os.kill(relay.pid, signal.SIGHUP)
    t.check(rt.wait_until(lambda: any("keeping the running configuration" in l
                                      for l in lines_of(relay)), 10), "the reload failed")
    with open(relay.conf_path, "w") as f:
        f.write(good)
    b.start()
    relay.stop()

    objs, bad_lines = [], []
    for l in lines_of(relay):
        try:
            o = json.loads(l)
        except ValueError:
            bad_lines.append(l)
            continue
        if not (isinstance(o, dict) and TS.match(o.get("ts", "")) and o.get("level") in LEVELS
                and isinstance(o.get("who"), str) and isinstance(o.get("msg"), str)):
            bad_lines.append(l)
        objs.append(o)
    t.check(objs and not bad_lines,
            "every line (%d) is one JSON object with ts, level, who, msg" % len(objs),
            "not so: %s" % bad_lines[:3])
    conn_lines = [o for o in objs if re.match(r"^[A-Za-z0-9_-]+#\d+$", o["who"])]
    t.check(conn_lines and all(o.get("broker") == o["who"].split("#")[0]
                               and o.get("conn") == int(o["who"].split("#")[1])
                               for o in conn_lines),
            "a connection's lines (%d) have broker and conn" % len(conn_lines))
    ref = [o for o in objs if o.get("broker") == "R" and o.get("reason_code") == 0x87]
    t.check(ref and ref[0]["level"] == "WARN" and "not authorized" in ref[0]["msg"].lower(),
            "R's refusal: reason_code 135 (0x87): %r" % (ref[0]["msg"] if ref else None),
            "R's lines: %s" % [o for o in objs if o.get("broker") == "R"][:3])
    drop = [o for o in objs if o.get("route") == "drop"]
    t.check(drop and drop[0].get("reason") == "bad_topic" and "broker" not in drop[0]
            and drop[0]["who"] == "drop",
            "the drop: route \"drop\", reason bad_topic, no broker: %r"
            % (drop[0]["msg"] if drop else None), "got %s" % drop)
    err = [o for o in objs if o["level"] == "ERROR" and "keeping the running" in o["msg"]]
    t.check(err and ("%s:%d: " % (relay.conf_path, line)) in err[0]["msg"],
            "the failed reload: ERROR naming FILE:LINE: %r" % (err[0]["msg"] if err else None))
    t.check(not any(l.startswith("<") for l in lines_of(relay)),
            "$JOURNAL_STREAM naming another stream: no priority prefixes")
    t.check(any(o["who"] == "relay" and o["level"] == "INFO" and "starting" in o["msg"]
                for o in objs), "the relay's own lines: who \"relay\"")


def journal(t, a, b, fmt):
    t.section("stderr is the journal, log_format = %s" % fmt)
    rec = {"min": 100, "max": 300}
    relay = t.relay(relay={"id": "site-" + fmt, "log_format": fmt},
                    brokers=[{"name": "A", "url": a.url, "reconnect": rec},
                             {"name": "B", "url": b.url, "reconnect": rec}],
                    routes=[{"name": "ab", "from": "A", "to": "B", "filter": "s/#"}],
                    name="journal-" + fmt, start=False)
    relay.start(env={"JOURNAL_STREAM": prepare_stderr(relay)})
    relay.wait_ready({"A": a, "B": b})
    b.kill()
    t.check(rt.wait_until(lambda: any("B#0" in l and "WARN" in l for l in lines_of(relay)), 10),
            "a warning for B#0")
    with open(relay.conf_path, "w") as f:
        f.write(relay.text.replace("relay: {", "relay: {\n  colour = 1;", 1))
    os.kill(relay.pid, signal.SIGHUP)
    t.check(rt.wait_until(lambda: any("keeping the running" in l for l in lines_of(relay)), 10),
            "an error: a broken file reloaded")
    b.start()
    relay.stop()
    bad, seen = [], set()
    for l in lines_of(relay):
        m = re.match(r"^<(\d)>(.*)$", l)
        if not m:
            bad.append(l)
            continue
        if fmt == "text":
            lv = re.match(r"^\S+ (ERROR|WARN |INFO |DEBUG) ", m.group(2))
            level = lv.group(1).strip() if lv else None
        else:
            try:
                level = json.loads(m.group(2)).get("level")
            except ValueError:
                level = None
        if level not in LEVELS or LEVELS[level] != m.group(1):
            bad.append(l)
        seen.add(level)
    t.check(not bad and {"INFO", "WARN", "ERROR"} <= seen,
            "every line starts with its priority (%s)" % ", ".join(
                "<%s> %s" % (LEVELS[x], x) for x in sorted(seen)),
            "not so: %s" % bad[:3])


def run(t):
    a = t.broker("A", log_all=False)
    b = t.broker("B", log_all=False)
    json_format(t, a, b)
    journal(t, a, b, "text")
    journal(t, a, b, "json")


if __name__ == "__main__":
    rt.main(run, __doc__)
