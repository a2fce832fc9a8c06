"""Command line and configuration: bad files exit 1 naming file and line; --check; SIGTERM.

- Bad configurations (unknown key, unknown broker, invalid filter, ${3} with one '+', bad URL
  scheme, version "4"): `mqtt-relay -c FILE --check` and `mqtt-relay -c FILE` both exit 1, and
  stderr has a line starting with "FILE:LINE:" (SPEC: `relay.conf:14: route "cmd-down": unknown
  broker "edgee"`). The offending setting sits alone on its line, and a route or broker with a
  bad value is written on a single line, so LINE is the same whichever of the setting or its
  group the message points at. The exact wording is the configuration engineer's.
- --check on a valid file exits 0 and prints each route's subscription on stdout, exactly:
  "a/+/b/#", "$share/g/s/#", "$oshare/o/os/#".
- A started relay: every stderr line has SPEC's log format; nothing is logged per message at
  the default level; SIGTERM makes it send DISCONNECT to each broker and exit 0.
"""
import re
import sys

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

# A valid file. Line numbers matter: the bad variants replace one line (marked @NAME@).
VALID = """\
# mqtt-relay configuration for test_config.py
relay: {
  id = "cfg";
  log_level = "info";
  drain_timeout = 2000;
  @RELAY_EXTRA@
};

brokers = (
  { name = "edge"; url = "mqtt://127.0.0.1:@EDGE_PORT@"; version = "3.1.1"; },
  { name = "cloud"; url = @CLOUD_URL@; version = @CLOUD_VERSION@; }
);

routes = (
  { name = "plain"; from = "edge"; to = "cloud"; filter = "a/+/b/#"; topic = "x/${1}/${#}"; },
  { name = "shared"; from = "edge"; to = "cloud"; filter = "s/#"; share = "g"; },
  { name = "oshared"; from = "cloud"; to = "edge"; filter = "os/#"; share = "o"; ordered = true; },
  @ROUTE@
);
"""

GOOD_ROUTE = '{ name = "last"; from = "cloud"; to = "edge"; filter = "l/+"; topic = "m/${1}"; }'


def conf(edge_port=1, cloud_port=2, relay_extra="", cloud_url=None, cloud_version='"5"',
         route=GOOD_ROUTE):
    return (VALID.replace("@RELAY_EXTRA@", relay_extra)
            .replace("@EDGE_PORT@", str(edge_port))
            .replace("@CLOUD_URL@", cloud_url or '"mqtt://127.0.0.1:%d"' % cloud_port)
            .replace("@CLOUD_VERSION@", cloud_version)
            .replace("@ROUTE@", route))


def line_of(text, needle):
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError("%r not in the file" % needle)


BAD = [
    ("unknown key", dict(relay_extra="bogus_key = 1;"), "bogus_key"),
    ("unknown broker",
     dict(route='{ name = "typo"; from = "cloud"; to = "edgee"; filter = "t/#"; }'), "edgee"),
    ("invalid filter",
     dict(route='{ name = "badf"; from = "cloud"; to = "edge"; filter = "t/#/x"; }'), "t/#/x"),
    ("${3} with one '+'",
     dict(route='{ name = "badt"; from = "cloud"; to = "edge"; filter = "t/+/x"; '
                'topic = "y/${3}"; }'), "${3}"),
    ("bad URL scheme", dict(cloud_url='"http://127.0.0.1:1883"'), "http://"),
    ("version \"4\"", dict(cloud_version='"4"'), 'version = "4"'),
]


def run(t):
    t.section("bad configurations exit 1 and name FILE:LINE")
    for what, kw, needle in BAD:
        text = conf(**kw)
        line = line_of(text, needle)
        name = "bad-%s.conf" % re.sub(r"[^a-z0-9]+", "-", what.lower()).strip("-")
        for args in (["--check"], []):
            rc, out, err = t.run_relay_once(text, args, name)
            cmd = "mqtt-relay -c %s%s" % (name, " " + " ".join(args) if args else "")
            t.check(rc == 1, "%s: `%s` exits 1" % (what, cmd),
                    "exit %s; stderr: %s" % (rc, err.strip()[-500:]))
            prefix = "%s:%d:" % (name, line)
            hits = [l for l in err.splitlines() if prefix in l]
            t.check(bool(hits), "%s: stderr names %s" % (what, prefix),
                    "stderr: %r" % err.strip()[-500:])
            if args:
                t.note("%s" % hits[0].strip())

    t.section("--check on a valid file")
    rc, out, err = t.run_relay_once(conf(), ["--check"], "valid.conf")
    t.check(rc == 0, "`mqtt-relay -c valid.conf --check` exits 0",
            "exit %s; stderr: %s" % (rc, err.strip()[-500:]))
    for sub in ("a/+/b/#", "$share/g/s/#", "$oshare/o/os/#", "l/+"):
        # the subscription as a whole word: not as a part of a longer filter or topic
        word = r"(?<![\w/$+#])" + re.escape(sub) + r"(?![\w/+#])"
        t.check(re.search(word, out) is not None, "--check prints the subscription %s" % sub,
                "stdout:\n%s" % out)
    t.check(out.strip() != "" and "secret" not in out, "the plan is on stdout")

    t.section("a running relay: log format, quiet per message, SIGTERM exits 0")
    edge = t.broker("edge")
    cloud = t.broker("cloud")
    relay = t.relay(
        relay={"id": "cfg"},
        brokers=[{"name": "edge", "url": edge.url, "version": "3.1.1"},
                 {"name": "cloud", "url": cloud.url, "version": "5"}],
        routes=[{"from": "edge", "to": "cloud", "filter": "q/#", "qos": 1}])
    relay.wait_ready({"edge": edge, "cloud": cloud})
    sub = t.client(cloud, "5").subscribe("q/#", 1)
    pub = t.client(edge, "3.1.1")
    pub.publish("q/first", b"first", 1)
    pub.wait_published()
    t.check(sub.wait_for(lambda ms: len(ms) >= 1, 15), "a first message crosses")
    before = len(relay.log_lines())
    for i in range(200):
        pub.publish("q/%d" % i, b"m%d" % i, 1)
    pub.wait_published()
    sub.wait_for(lambda ms: len(ms) >= 201, 30)
    t.check(sub.count() >= 201, "200 more messages cross")
    grew = len(relay.log_lines()) - before
    t.check(grew < 20, "nothing is logged per message at the default level (%d new lines for "
            "200 messages)" % grew)
    relay.stop()  # asserts exit status 0
    lines = relay.log_lines()
    bad = [l for l in lines if not rt.LOG_LINE.match(l)]
    t.check(lines and not bad, "every stderr line has SPEC's format "
            "(UTC ms timestamp, level, who: message)", "e.g. %r" % bad[:3])
    for b, cid in ((edge, "cfg-edge"), (cloud, "cfg-cloud")):
        t.check(any(l == "Received DISCONNECT from %s" % cid for l in b.log_lines()),
                "on SIGTERM the relay sent DISCONNECT to %s" % b.name)
    pub.stop()
    sub.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
