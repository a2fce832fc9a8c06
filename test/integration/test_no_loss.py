"""No loss at QoS 1: 5,000 numbered messages while (a) the destination broker is killed with
SIGKILL and restarted on the same port, and (b) the relay is killed with SIGKILL and restarted.

Each message's number is in its topic ("nl/<n>") and its payload, so Mosquitto's log (log_type
all), which shows topics but not payloads, can say which numbers it handled. The publisher is
paced (about 1,000 messages/s) so the faults land in the middle of the flow, and it keeps
publishing while the destination or the relay is down. Duplicates are counted and reported,
never failed (QoS 1 is at least once). The relay speaks 3.1.1 to the source and 5 to the
destination in (b) (an edge uplink), the other way round in (a).

(b) relay killed: the brokers never stop, so the assertion is exact: every number arrives at
    least once. What the relay had not acknowledged at the source when it died, the source
    redelivers to the restarted relay (persistent session, clean_start false).

(a) destination killed: a SIGKILLed Mosquitto loses what it had not saved (TESTING.md), so a
    message the destination had acknowledged to the relay, but not yet written to our
    subscriber's socket, can be lost by the broker and not by the relay. The relay's contract
    (SPEC) is about acknowledgements: it acknowledges the source only after the destination
    acknowledged, and resends whatever the destination had not acknowledged. So the assertion
    is: every number arrives, except numbers the killed destination itself had acknowledged
    ("Sending PUBACK to <relay id>" in the killed run's log, which goes to stderr unbuffered, so a
    SIGKILL can not lose a logged line) -- those are excused and counted. Mosquitto writes a
    PUBLISH to a connected subscriber before it sends the PUBACK, so the excused set is small
    (what sat in the kernel when the broker died). To keep it honest and small, the subscriber
    has a persistent session saved before the kill (a clean restart saves it, then
    autosave_interval 1), so it gets its subscription back and whatever the broker had saved.
"""
import re
import sys
import threading
import time

sys.dont_write_bytecode = True
import relaytest as rt  # noqa: E402

N = 5000
RATE = 1000.0  # messages per second from the publisher


def numbers(msgs):
    out = []
    for m in msgs:
        try:
            out.append(int(m.payload))
        except ValueError:
            pass
    return out


class Publisher(threading.Thread):
    """Publishes "nl/<n>" = b"<n>" for n in 0..N-1 at about RATE per second (QoS 1). paho queues
    what the broker has not acknowledged, so a fault on the relay side never blocks it."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.client = client
        self.error = None
        self.done = threading.Event()

    def run(self):
        try:
            start = time.monotonic()
            for n in range(N):
                self.client.publish("nl/%d" % n, str(n).encode(), 1)
                ahead = n / RATE - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
        except Exception as e:  # reported by the main thread
            self.error = e
        finally:
            self.done.set()


def relay_for(t, name, src, dst, src_version, dst_version):
    t.note("the relay speaks MQTT %s to the source, %s to the destination"
           % (src_version, dst_version))
    relay = t.relay(
        name=name,
        relay={"id": "nl"},
        brokers=[{"name": "src", "url": src.url, "version": src_version,
                  "reconnect": {"min": 100, "max": 1000}},
                 {"name": "dst", "url": dst.url, "version": dst_version,
                  "reconnect": {"min": 100, "max": 1000}}],
        routes=[{"from": "src", "to": "dst", "filter": "nl/#", "qos": 1}])
    relay.wait_ready({"src": src, "dst": dst})
    return relay


def distinct(sub):
    return len(set(numbers(sub.received())))


def finish(t, what, pubthread, pub, sub, timeout=180):
    pubthread.done.wait(timeout)
    t.check(pubthread.error is None, "%s: the publisher published all %d" % (what, N),
            repr(pubthread.error))
    pub.wait_published(timeout)
    rt.wait_until(lambda: distinct(sub) >= N, timeout, 0.2)
    got = numbers(sub.received())
    return got, set(range(N)) - set(got), len(got) - len(set(got))


def run(t):
    # ------------------------------------------------------------------------------ (b)
    t.section("(b) relay killed with SIGKILL and restarted, twice, during 5,000 messages")
    src = t.broker("b-src", log_all=False)
    dst = t.broker("b-dst", log_all=False)
    relay = relay_for(t, "relay-b", src, dst, "3.1.1", "5")
    sub = t.client(dst, "5").subscribe("nl/#", 1)
    pub = t.client(src, "5")
    pt = Publisher(pub)
    pt.start()
    for at in (1000, 3000):
        rt.wait_until(lambda: distinct(sub) >= at or pt.done.is_set(), 60)
        t.note("%d numbers arrived, %s" % (distinct(sub), "publisher still running"
                                           if not pt.done.is_set() else "publisher done"))
        relay.kill()
        time.sleep(0.5)  # let the publisher go on while the relay is down
        relay.start()
    got, missing, dups = finish(t, "(b)", pt, pub, sub)
    t.check(not missing, "(b): every one of the %d numbers arrived at least once "
            "(%d duplicates)" % (N, dups),
            "%d missing, e.g. %s" % (len(missing), sorted(missing)[:20]))
    t.say("   duplicates (b) relay SIGKILL x2: %d" % dups)
    pub.stop()
    sub.stop()
    relay.stop()

    # ------------------------------------------------------------------------------ (a)
    t.section("(a) destination broker killed with SIGKILL and restarted on the same port")
    src = t.broker("a-src", log_all=False)
    dst = t.broker("a-dst", persistence=True, autosave_interval=1)
    relay = relay_for(t, "relay-a", src, dst, "5", "3.1.1")
    rid = relay.client_ids("dst")[0]
    sub = t.client(dst, "5", clean=False, session_expiry=3600).subscribe("nl/#", 1)
    n = sub.connects
    dst.restart()  # a clean stop writes the subscriber's session to disk
    t.check(sub.wait_reconnected(n, 30), "the subscriber's persistent session is in place")
    pub = t.client(src, "5")
    pt = Publisher(pub)
    pt.start()
    rt.wait_until(lambda: distinct(sub) >= 1500 or pt.done.is_set(), 60)
    killed_run = len(dst.log_paths) - 1
    t.note("%d numbers arrived, %s" % (distinct(sub), "publisher still running"
                                       if not pt.done.is_set() else "publisher done"))
    dst.kill()
    t.note("SIGKILL broker a-dst; the publisher goes on for a second")
    time.sleep(1.0)
    dst.start()
    t.note("broker a-dst restarted on port %d" % dst.port)
    got, missing, dups = finish(t, "(a)", pt, pub, sub)

    # Numbers the killed destination acknowledged to the relay ("Received PUBLISH from RID
    # (..., m<mid>, 'nl/<n>', ...)" then "Sending PUBACK to RID (m<mid>, rc0)").
    acked = set()
    last = {}
    pub_re = re.compile(r"^Received PUBLISH from %s \(d\d, q1, r\d, m(\d+), 'nl/(\d+)'"
                        % re.escape(rid))
    ack_re = re.compile(r"^Sending PUBACK to %s \(m(\d+)," % re.escape(rid))
    for line in dst.log_lines(killed_run):
        m = pub_re.match(line)
        if m:
            last[int(m.group(1))] = int(m.group(2))
            continue
        m = ack_re.match(line)
        if m and int(m.group(1)) in last:
            acked.add(last[int(m.group(1))])
    excused = missing & acked
    unexcused = missing - acked
    t.check(len(acked) > 0, "the killed destination's log shows what it acknowledged (%d "
            "numbers)" % len(acked))
    t.check(not unexcused,
            "(a): every number arrived at least once, except %d the killed broker had "
            "acknowledged and lost (%d duplicates)" % (len(excused), dups),
            "%d missing that the destination never acknowledged, e.g. %s"
            % (len(unexcused), sorted(unexcused)[:20]))
    t.say("   duplicates (a) destination SIGKILL: %d; lost by the broker after its own "
          "PUBACK: %d %s" % (dups, len(excused), sorted(excused)[:20]))
    pub.stop()
    sub.stop()
    relay.stop()


if __name__ == "__main__":
    rt.main(run, __doc__)
